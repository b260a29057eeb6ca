package gateway

import "strings"

// csvCell makes a CSV cell safe to open in a spreadsheet: a cell that
// begins with =, +, -, @, a tab or a carriage return would be read as a
// formula (CSV injection, OWASP), so it gets a leading apostrophe, which
// spreadsheets show as text and do not keep. A cell that begins with an
// apostrophe gets one more, so that removing one leading apostrophe from
// every cell that has one always gives the value back. Every other cell is
// as is.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r'", rune(s[0])) {
		return "'" + s
	}
	return s
}

// csvRow applies csvCell to every cell of a row.
func csvRow(cells ...string) []string {
	for i, c := range cells {
		cells[i] = csvCell(c)
	}
	return cells
}

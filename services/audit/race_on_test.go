//go:build race

package audit_test

// raceEnabled: the race detector slows the embedded SQLite (transpiled C)
// by an order of magnitude, so the scale test scales down.
const raceEnabled = true

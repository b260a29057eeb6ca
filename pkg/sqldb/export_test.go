package sqldb

// InsertRowsAtMost is InsertRows with at most most rows a statement.
var InsertRowsAtMost = insertRows

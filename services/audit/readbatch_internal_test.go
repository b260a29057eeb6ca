package audit

// ReadBatch is readBatch, for the tests of package audit_test.
var ReadBatch = readBatch

package eventlog

import "github.com/eva-org/eva/pkg/assist"

// HistoryForTest is the held history of a case (HeldCases.history).
func (h *HeldCases) HistoryForTest(caseID string) []assist.Recorded { return h.history(caseID) }

package eventlog

import (
	"context"

	"github.com/eva-org/eva/pkg/assist"
)

// HistoryForTest is the held history of a case (HeldCases.history).
func (h *HeldCases) HistoryForTest(caseID string) []assist.Recorded { return h.history(caseID) }

// ExecuteBothForTest is ExecuteFromThen's batch alone, on any stream (a
// standalone one too, which ExecuteFromThen never batches on).
func (l *Log) ExecuteBothForTest(ctx context.Context, c *assist.Case, cmd, next Command) (*assist.Case, bool) {
	return l.executeBoth(ctx, c, cmd, next)
}

package eventlog

import (
	"context"
	"slices"
)

// BatchMsgs are the events of the consumer batch that ctx runs in (a
// handler's ctx), in the order they are applied, those seen before
// included; nil outside a consumer's batch. A handler uses it at the
// batch's first event to read at once what the batch's other events will
// need (the rows of all its cases in one statement), keeping them with
// TxLocal. The slice is a copy.
func BatchMsgs(ctx context.Context) []Msg {
	b := batchOf(ctx)
	if b == nil {
		return nil
	}
	return slices.Clone(b.msgs)
}

-- +goose Up
-- The queue's first page without sorting the queue: the cases waiting in
-- it by deadline (overdue ones are its start), and the escalated ones on
-- their own. The states are the ones approval's Queue query names
-- (assist.StateSubmitted, StateUnderReview, StateAwaitingSecondApproval).
CREATE INDEX approval_queue_waiting ON approval_queue (deadline, id)
    WHERE status IN ('submitted', 'under_review', 'awaiting_second_approval');
CREATE INDEX approval_queue_escalated ON approval_queue (deadline, id)
    WHERE escalated = 1 AND status IN ('submitted', 'under_review', 'awaiting_second_approval');

-- +goose Down
DROP INDEX approval_queue_escalated;
DROP INDEX approval_queue_waiting;

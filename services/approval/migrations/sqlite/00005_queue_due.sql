-- +goose Up
-- When something of a case falls due that a timer must see to (ADR 45):
-- its deadline's warning, or once warned the deadline, while it is open and
-- not escalated; its claim's lease while under review; the earliest, 0 when
-- nothing is. A sweep of the cases due replaces the timer each case had
-- (ADR 40). The cases queued before this column get it from what the queue
-- has; the warning time is the case's (assist.WarnAt) to the microsecond
-- below, and a sweep that finds a case not yet due sweeps again at its time.
ALTER TABLE approval_queue ADD COLUMN due_at BIGINT NOT NULL DEFAULT 0;
UPDATE approval_queue SET due_at = CASE
    WHEN status = 'under_review' AND claim_expires_at > 0 AND (escalated <> 0 OR claim_expires_at <
        CASE WHEN warned = 0 THEN created_at + (deadline - created_at) / 4 * 3 ELSE deadline END)
        THEN claim_expires_at
    WHEN escalated = 0 THEN CASE WHEN warned = 0 THEN created_at + (deadline - created_at) / 4 * 3 ELSE deadline END
    ELSE 0 END
WHERE status IN ('submitted', 'under_review', 'info_requested', 'awaiting_second_approval');
CREATE INDEX approval_queue_due ON approval_queue (due_at, id) WHERE due_at > 0;

-- +goose Down
DROP INDEX approval_queue_due;
ALTER TABLE approval_queue DROP COLUMN due_at;

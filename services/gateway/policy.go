package gateway

import (
	"net/http"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/services/approval/approvalapi"
)

// policyJSON is the decision policy: caps by category and per case, the
// second-approval threshold, deadlines by urgency and the claim lease.
type policyJSON struct {
	Version                     string            `json:"version" jsonschema_description:"the version; a case records the one in force when filed, a decision the one it was taken under"`
	CapsUSDCents                map[string]int64  `json:"caps_usd_cents" jsonschema_description:"cap of one request by category, in integer US cents"`
	CaseCapUSDCents             int64             `json:"case_cap_usd_cents" jsonschema_description:"cap of one request of any category, in integer US cents"`
	SecondApprovalAboveUSDCents int64             `json:"second_approval_above_usd_cents" jsonschema_description:"an approval above this needs a second, different approver; 0: never"`
	Deadlines                   map[string]string `json:"deadlines" jsonschema_description:"time to decide by urgency (critical, urgent, routine), as Go durations such as 4h"`
	ClaimTTL                    string            `json:"claim_ttl" jsonschema_description:"how long a claim holds a request, as a Go duration such as 30m"`
}

// policyBody is PUT /v1/policy's body: a whole policy without its version.
type policyBody struct {
	CapsUSDCents                map[string]int64  `json:"caps_usd_cents" jsonschema_description:"cap by category, in integer US cents, each positive; a category left out is capped by the case cap"`
	CaseCapUSDCents             int64             `json:"case_cap_usd_cents" jsonschema_description:"positive, in integer US cents"`
	SecondApprovalAboveUSDCents int64             `json:"second_approval_above_usd_cents" jsonschema_description:"0 or more, in integer US cents"`
	Deadlines                   map[string]string `json:"deadlines" jsonschema_description:"critical, urgent and routine, each a Go duration of at least 1s"`
	ClaimTTL                    string            `json:"claim_ttl" jsonschema_description:"a Go duration of at least 1s"`
}

// policyVersionJSON is one version of the policy with who set it, when.
type policyVersionJSON struct {
	policyJSON
	ChangedBy string     `json:"changed_by,omitempty" jsonschema_description:"the admin who set it; absent for the initial policy"`
	ChangedAt *timestamp `json:"changed_at,omitempty"`
}

func toPolicyJSON(d approvalapi.PolicyDoc) policyJSON {
	return policyJSON{Version: d.Version, CapsUSDCents: d.CapsUSDCents, CaseCapUSDCents: d.CaseCapUSDCents,
		SecondApprovalAboveUSDCents: d.SecondApprovalAboveUSDCents, Deadlines: d.Deadlines, ClaimTTL: d.ClaimTTL}
}

func toPolicyVersionJSON(v approvalapi.PolicyVersion) policyVersionJSON {
	return policyVersionJSON{policyJSON: toPolicyJSON(v.Policy), ChangedBy: v.ChangedBy, ChangedAt: optTime(v.ChangedAt)}
}

// getPolicy is GET /v1/policy.
func (s *server) getPolicy(r *http.Request) (policyJSON, error) {
	v, err := s.approval.Policy(r.Context(), approvalapi.PolicyRequest{})
	return toPolicyJSON(v.Policy), err
}

// putPolicy is PUT /v1/policy.
func (s *server) putPolicy(r *http.Request, c command, in policyBody) (policyJSON, error) {
	v, err := s.approval.ChangePolicy(r.Context(), approvalapi.ChangePolicyRequest{CommandID: c.ID,
		Actor: assist.Actor{Username: c.User.Username, Role: admin},
		Policy: approvalapi.PolicyDoc{CapsUSDCents: in.CapsUSDCents, CaseCapUSDCents: in.CaseCapUSDCents,
			SecondApprovalAboveUSDCents: in.SecondApprovalAboveUSDCents, Deadlines: in.Deadlines, ClaimTTL: in.ClaimTTL}})
	return toPolicyJSON(v.Policy), err
}

// policyHistory is GET /v1/policy/history.
func (s *server) policyHistory(r *http.Request) (page[policyVersionJSON], error) {
	h, err := s.approval.PolicyHistory(r.Context(), approvalapi.PolicyRequest{})
	if err != nil {
		return page[policyVersionJSON]{}, err
	}
	return page[policyVersionJSON]{Items: mapSlice(h.Items, toPolicyVersionJSON)}, nil
}

package intake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/eva-org/eva/pkg/assist"
)

// storedCase is the whole state of a case as the read model keeps it
// (intake_cases.state). Its JSON names are the ones the state was first
// stored under, so that rows written before still read.
type storedCase struct {
	ID                 string           `json:"ID"`
	Requester          string           `json:"Requester"`
	Post               string           `json:"Post"`
	Category           string           `json:"Category"`
	Urgency            string           `json:"Urgency"`
	AmountCents        int64            `json:"AmountCents"`
	Justification      string           `json:"Justification"`
	Beneficiary        storedSealed     `json:"Beneficiary"`
	BeneficiaryRefHash []byte           `json:"BeneficiaryRefHash"`
	PayeeID            string           `json:"PayeeID"`
	Deadline           time.Time        `json:"Deadline"`
	Escalated          bool             `json:"Escalated"`
	PersonalDataErased bool             `json:"PersonalDataErased,omitempty"`
	State              string           `json:"State"`
	ClaimedBy          string           `json:"ClaimedBy"`
	ClaimExpiresAt     time.Time        `json:"ClaimExpiresAt"`
	Question           string           `json:"Question"`
	ApprovedCents      int64            `json:"ApprovedCents"`
	ApprovedBy         string           `json:"ApprovedBy"`
	FundID             string           `json:"FundID"`
	HoldID             string           `json:"HoldID"`
	PayoutID           string           `json:"PayoutID"`
	ReleasedHolds      []string         `json:"ReleasedHolds"`
	Approvals          []storedApproval `json:"Approvals,omitempty"`
	Amenders           []string         `json:"Amenders,omitempty"`
	Authors            []string         `json:"Authors,omitempty"`
	PolicyVersion      string           `json:"PolicyVersion,omitempty"`
	// PossibleDuplicateOf and PayoutAttempt came later too: rows without
	// them read as none.
	PossibleDuplicateOf []string  `json:"PossibleDuplicateOf,omitempty"`
	PayoutAttempt       int       `json:"PayoutAttempt,omitempty"`
	CreatedAt           time.Time `json:"CreatedAt"`
	UpdatedAt           time.Time `json:"UpdatedAt"`
	Version             uint64    `json:"Version"`
	Events              int       `json:"Events"`
}

type storedApproval struct {
	Approver      string    `json:"Approver"`
	AmountCents   int64     `json:"AmountCents"`
	At            time.Time `json:"At"`
	PolicyVersion string    `json:"PolicyVersion"`
}

type storedSealed struct {
	KeyID      string `json:"KeyID"`
	Ciphertext []byte `json:"Ciphertext"`
}

func toStored(c *assist.Case) storedCase {
	return storedCase{
		ID: c.ID, Requester: c.Requester, Authors: c.Authors, Post: c.Post, Category: string(c.Category), Urgency: string(c.Urgency),
		AmountCents: c.AmountCents, Justification: c.Justification,
		Beneficiary:        storedSealed{KeyID: c.Beneficiary.KeyID, Ciphertext: c.Beneficiary.Ciphertext},
		BeneficiaryRefHash: c.BeneficiaryRefHash, PossibleDuplicateOf: c.PossibleDuplicateOf, PayoutAttempt: c.PayoutAttempt, PayeeID: c.PayeeID, Deadline: c.Deadline, Escalated: c.Escalated,
		PersonalDataErased: c.PersonalDataErased,
		State:              string(c.State), ClaimedBy: c.ClaimedBy, ClaimExpiresAt: c.ClaimExpiresAt, Question: c.Question,
		ApprovedCents: c.ApprovedCents, ApprovedBy: c.ApprovedBy, FundID: c.FundID, HoldID: c.HoldID,
		PayoutID: c.PayoutID, ReleasedHolds: c.ReleasedHolds, Approvals: mapSlice(c.Approvals, toStoredApproval),
		Amenders: c.Amenders, PolicyVersion: c.PolicyVersion, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		Version: c.Version, Events: c.Events,
	}
}

func toStoredApproval(a assist.Approval) storedApproval {
	return storedApproval{Approver: a.Approver, AmountCents: a.AmountCents, At: a.At, PolicyVersion: a.PolicyVersion}
}

func (a storedApproval) toApproval() assist.Approval {
	return assist.Approval{Approver: a.Approver, AmountCents: a.AmountCents, At: a.At, PolicyVersion: a.PolicyVersion}
}

// mapSlice maps a slice; nil stays nil.
func mapSlice[T, U any](ts []T, f func(T) U) []U {
	if ts == nil {
		return nil
	}
	out := make([]U, len(ts))
	for i, t := range ts {
		out[i] = f(t)
	}
	return out
}

func (s storedCase) toCase() *assist.Case {
	return &assist.Case{
		ID: s.ID, Requester: s.Requester, Authors: s.Authors, Post: s.Post, Category: assist.Category(s.Category),
		Urgency: assist.Urgency(s.Urgency), AmountCents: s.AmountCents, Justification: s.Justification,
		Beneficiary:        assist.Sealed{KeyID: s.Beneficiary.KeyID, Ciphertext: s.Beneficiary.Ciphertext},
		BeneficiaryRefHash: s.BeneficiaryRefHash, PossibleDuplicateOf: s.PossibleDuplicateOf, PayoutAttempt: s.PayoutAttempt, PayeeID: s.PayeeID, Deadline: s.Deadline, Escalated: s.Escalated,
		PersonalDataErased: s.PersonalDataErased,
		State:              assist.State(s.State), ClaimedBy: s.ClaimedBy, ClaimExpiresAt: s.ClaimExpiresAt, Question: s.Question,
		ApprovedCents: s.ApprovedCents, ApprovedBy: s.ApprovedBy, FundID: s.FundID, HoldID: s.HoldID,
		PayoutID: s.PayoutID, ReleasedHolds: s.ReleasedHolds,
		Approvals: mapSlice(s.Approvals, storedApproval.toApproval), Amenders: s.Amenders, PolicyVersion: s.PolicyVersion,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Version: s.Version, Events: s.Events,
	}
}

// encodeState is the stored form of a case.
func encodeState(c *assist.Case) (string, error) {
	b, err := appendState(nil, c)
	return string(b), err
}

// appendState appends the stored form of a case to b: the bytes
// json.Marshal(toStored(c)) makes (TestStateJSONIsJSONMarshal,
// FuzzStateJSON), written without reflection. A rebuild writes the state
// of every case; reflection and its allocations were a tenth of a
// replay's CPU.
func appendState(b []byte, c *assist.Case) ([]byte, error) {
	s := toStored(c)
	start := len(b)
	out, ok := s.appendJSON(b)
	if !ok {
		// A time json cannot write (a year outside 0–9999): json.Marshal
		// says why, in its own words.
		j, err := json.Marshal(s)
		return append(b[:start], j...), err
	}
	return out, nil
}

// appendJSON appends s as encoding/json writes it (the fields in order,
// omitempty as tagged, strings HTML-escaped, []byte as standard base64,
// time.Time as its MarshalJSON); ok is false for a time that has no JSON
// form.
func (s *storedCase) appendJSON(b []byte) (_ []byte, ok bool) {
	ok = true
	str := func(name, v string) {
		b = append(b, name...)
		b = appendJSONString(b, v)
	}
	tm := func(name string, t time.Time) {
		b = append(b, name...)
		b = append(b, '"')
		var err error
		if b, err = t.AppendText(b); err != nil {
			ok = false
		}
		b = append(b, '"')
	}
	bytes := func(name string, v []byte) {
		b = append(b, name...)
		if v == nil {
			b = append(b, "null"...)
			return
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v)
		b = append(b, '"')
	}
	strs := func(name string, v []string) {
		b = append(b, name...)
		if v == nil {
			b = append(b, "null"...)
			return
		}
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, x)
		}
		b = append(b, ']')
	}
	integer := func(name string, v int64) {
		b = append(b, name...)
		b = strconv.AppendInt(b, v, 10)
	}
	boolean := func(name string, v bool) {
		b = append(b, name...)
		b = strconv.AppendBool(b, v)
	}
	str(`{"ID":`, s.ID)
	str(`,"Requester":`, s.Requester)
	str(`,"Post":`, s.Post)
	str(`,"Category":`, s.Category)
	str(`,"Urgency":`, s.Urgency)
	integer(`,"AmountCents":`, s.AmountCents)
	str(`,"Justification":`, s.Justification)
	str(`,"Beneficiary":{"KeyID":`, s.Beneficiary.KeyID)
	bytes(`,"Ciphertext":`, s.Beneficiary.Ciphertext)
	bytes(`},"BeneficiaryRefHash":`, s.BeneficiaryRefHash)
	str(`,"PayeeID":`, s.PayeeID)
	tm(`,"Deadline":`, s.Deadline)
	boolean(`,"Escalated":`, s.Escalated)
	if s.PersonalDataErased {
		boolean(`,"PersonalDataErased":`, s.PersonalDataErased)
	}
	str(`,"State":`, s.State)
	str(`,"ClaimedBy":`, s.ClaimedBy)
	tm(`,"ClaimExpiresAt":`, s.ClaimExpiresAt)
	str(`,"Question":`, s.Question)
	integer(`,"ApprovedCents":`, s.ApprovedCents)
	str(`,"ApprovedBy":`, s.ApprovedBy)
	str(`,"FundID":`, s.FundID)
	str(`,"HoldID":`, s.HoldID)
	str(`,"PayoutID":`, s.PayoutID)
	strs(`,"ReleasedHolds":`, s.ReleasedHolds)
	if len(s.Approvals) > 0 {
		b = append(b, `,"Approvals":[`...)
		for i, a := range s.Approvals {
			if i > 0 {
				b = append(b, ',')
			}
			str(`{"Approver":`, a.Approver)
			integer(`,"AmountCents":`, a.AmountCents)
			tm(`,"At":`, a.At)
			str(`,"PolicyVersion":`, a.PolicyVersion)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(s.Amenders) > 0 {
		strs(`,"Amenders":`, s.Amenders)
	}
	if len(s.Authors) > 0 {
		strs(`,"Authors":`, s.Authors)
	}
	if s.PolicyVersion != "" {
		str(`,"PolicyVersion":`, s.PolicyVersion)
	}
	if len(s.PossibleDuplicateOf) > 0 {
		strs(`,"PossibleDuplicateOf":`, s.PossibleDuplicateOf)
	}
	if s.PayoutAttempt != 0 {
		integer(`,"PayoutAttempt":`, int64(s.PayoutAttempt))
	}
	tm(`,"CreatedAt":`, s.CreatedAt)
	tm(`,"UpdatedAt":`, s.UpdatedAt)
	b = append(b, `,"Version":`...)
	b = strconv.AppendUint(b, s.Version, 10)
	integer(`,"Events":`, int64(s.Events))
	b = append(b, '}')
	return b, ok
}

// appendJSONString appends v as a JSON string the way encoding/json does
// (with HTML escaping, as json.Marshal): the quote, the backslash and the
// control characters escaped (\b \f \n \r \t, the others as \u00XX),
// <, > and & as \u003c \u003e \u0026, U+2028 and U+2029 as \u2028 and
// \u2029, each byte of invalid UTF-8 as \ufffd.
func appendJSONString(b []byte, v string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(v); {
		if c := v[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, v[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(v[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, v[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, v[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, v[start:]...)
	return append(b, '"')
}

// decodeState reads a stored case.
func decodeState(id, state string) (*assist.Case, error) {
	var s storedCase
	if err := json.Unmarshal([]byte(state), &s); err != nil {
		return nil, fmt.Errorf("projected case %s: %w", id, err)
	}
	return s.toCase(), nil
}

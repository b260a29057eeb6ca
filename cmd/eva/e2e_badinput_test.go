package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/google/uuid"
)

// TestE2EBadInput (invariant 8) sends the real binary bad input on every
// POST route of API.md and bad query parameters on the GET lists: each
// answer is a 4xx problem (never a 5xx) that names the field at fault for
// a 400, and nothing is written: the audit checkpoint, the funds, the
// requests, payouts and payees are the same after the whole table.
func TestE2EBadInput(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "eva dev", t.TempDir())
	fund, payee := c.demoFund(), c.payee()

	// The cases the table works on: S submitted (filed with an
	// Idempotency-Key), C claimed by olu, D disbursed with its payout P.
	const setupKey = "badinput-setup-S"
	sBody := fileBody(payee.ID, "REF-BAD-S", 150_000)
	S := post[caseJSON](c, "ana", "/v1/requests", sBody, http.StatusCreated, map[string]string{"Idempotency-Key": setupKey}).ID
	C := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-BAD-C", 80_000), http.StatusCreated, nil).ID
	post[caseJSON](c, "olu", "/v1/requests/"+C+"/claim", nil, http.StatusOK, nil)
	D := post[caseJSON](c, "ana", "/v1/requests", fileBody(payee.ID, "REF-BAD-D", 30_000), http.StatusCreated, nil).ID
	post[caseJSON](c, "olu", "/v1/requests/"+D+"/claim", nil, http.StatusOK, nil)
	post[caseJSON](c, "olu", "/v1/requests/"+D+"/approve", map[string]any{"amount_usd_cents": 30_000, "fund_id": fund.ID}, http.StatusOK, nil)
	c.waitStatus(D, "disbursed", 30*time.Second)
	pays := c.settledPayouts(D)
	if len(pays) != 1 || pays[0].Status != "settled" {
		t.Fatalf("payouts of %s: %+v", D, pays)
	}
	P := pays[0].ID
	nobody := uuid.Must(uuid.NewV7()).String() // a well-formed id that names nothing

	before := takeSnapshot(t, c)

	// Request bodies.
	valid := func() map[string]any { return fileBody(payee.ID, "REF-BAD-NEW", 10_000) }
	with := func(kv ...any) string { // valid filing with fields set (nil deletes)
		b := valid()
		for i := 0; i < len(kv); i += 2 {
			path, v := kv[i].(string), kv[i+1]
			m := b
			if head, tail, ok := strings.Cut(path, "."); ok {
				m = maps.Clone(b[head].(map[string]any))
				b[head] = m
				path = tail
			}
			if v == nil {
				delete(m, path)
			} else {
				m[path] = v
			}
		}
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	validJSON := with()
	// raw replaces a field's JSON value by raw text.
	raw := func(field, rawValue string) string {
		data := with(field, "@@RAW@@")
		return strings.Replace(data, `"@@RAW@@"`, rawValue, 1)
	}
	long := func(n int) string { return strings.Repeat("é", n) }
	const (
		badUTF8 = "\xff\xfe"
		ct      = "Content-Type"
		idem    = "Idempotency-Key"
	)
	type bad struct {
		name   string
		user   string
		method string
		path   string
		body   string
		header map[string]string
		raw    http.Header
		status int    // the exact status expected
		field  string // for a 400: a field the errors must name
		// last runs it after the others: if it is wrongly accepted, it
		// changes a case the other rows rely on.
		last bool
	}
	req400 := func(name, user, path, body, field string) bad {
		return bad{name: name, user: user, method: http.MethodPost, path: path, body: body, status: 400, field: field}
	}
	file := func(name, body, field string) bad { return req400(name, "ana", "/v1/requests", body, field) }
	lastRow := func(b bad) bad { b.last = true; return b }
	var table []bad

	// POST /v1/requests.
	table = append(table,
		file("malformed JSON", `{"post": "BGD-DHAKA",`, "body"),
		file("not JSON", `post=BGD-DHAKA`, "body"),
		file("empty body", ``, "body"),
		file("whitespace body", "  \n ", "body"),
		file("null", `null`, "body"),
		file("array", `[`+validJSON+`]`, "body"),
		file("string", `"file it"`, "body"),
		file("two objects", validJSON+validJSON, "body"),
		file("trailing garbage", validJSON+"x", "body"),
		file("unknown field", raw("surprise", `1`), "surprise"),
		file("unknown nested field", raw("beneficiary.passport", `"X123"`), "beneficiary.passport"),
		file("duplicate field", strings.Replace(validJSON, `{`, `{"urgency":"routine",`, 1), "urgency"),
		file("field name in other case", strings.Replace(validJSON, `"post"`, `"Post"`, 1), "Post"),
		file("number for post", raw("post", `5`), "post"),
		file("number for category", raw("category", `3`), "category"),
		file("bool for urgency", raw("urgency", `true`), "urgency"),
		file("string amount", raw("amount_usd_cents", `"10000"`), "amount_usd_cents"),
		file("object for justification", raw("justification", `{"a":1}`), "justification"),
		file("string for beneficiary", raw("beneficiary", `"REF-1"`), "beneficiary"),
		file("number for beneficiary.reference", raw("beneficiary.reference", `7`), "beneficiary.reference"),
		file("array for payee_id", raw("payee_id", `["x"]`), "payee_id"),
		file("missing post", with("post", nil), "post"),
		file("missing category", with("category", nil), "category"),
		file("missing urgency", with("urgency", nil), "urgency"),
		file("missing amount", with("amount_usd_cents", nil), "amount_usd_cents"),
		file("missing justification", with("justification", nil), "justification"),
		file("blank justification", with("justification", "   "), "justification"),
		file("missing beneficiary", with("beneficiary", nil), "beneficiary.reference"),
		file("missing beneficiary.reference", with("beneficiary.reference", nil), "beneficiary.reference"),
		file("blank beneficiary.reference", with("beneficiary.reference", "  "), "beneficiary.reference"),
		file("bad category", with("category", "yacht"), "category"),
		file("category in capitals", with("category", "SHELTER"), "category"),
		file("bad urgency", with("urgency", "whenever"), "urgency"),
		file("empty urgency", with("urgency", ""), "urgency"),
		file("negative amount", with("amount_usd_cents", -100), "amount_usd_cents"),
		file("zero amount", with("amount_usd_cents", 0), "amount_usd_cents"),
		file("float amount", raw("amount_usd_cents", `100.5`), "amount_usd_cents"),
		file("exponent amount", raw("amount_usd_cents", `1e4`), "amount_usd_cents"),
		file("huge amount", raw("amount_usd_cents", `99999999999999999999`), "amount_usd_cents"),
		file("int64 overflow amount", raw("amount_usd_cents", `9223372036854775808`), "amount_usd_cents"),
		file("max int64 amount", raw("amount_usd_cents", `9223372036854775807`), "amount_usd_cents"),
		file("amount over the shelter cap", with("amount_usd_cents", 500_001), "amount_usd_cents"),
		file("amount over the travel documents cap", with("category", "travel_documents", "amount_usd_cents", 100_001), "amount_usd_cents"),
		file("justification too long", with("justification", long(4001)), "justification"),
		file("beneficiary.reference too long", with("beneficiary.reference", strings.Repeat("R", 129)), "beneficiary.reference"),
		file("beneficiary.name too long", with("beneficiary.name", long(201)), "beneficiary.name"),
		file("beneficiary.contact too long", with("beneficiary.contact", long(201)), "beneficiary.contact"),
		file("beneficiary.nationality too long", with("beneficiary.nationality", long(65)), "beneficiary.nationality"),
		file("post too long", with("post", strings.Repeat("P", 65)), "post"),
		file("post in lower case", with("post", "bgd-dhaka"), "post"),
		file("non-UTF-8 justification", strings.Replace(with("justification", "@@X@@"), "@@X@@", "bad "+badUTF8+" bytes", 1), "justification"),
		file("non-UTF-8 beneficiary.name", strings.Replace(with("beneficiary.name", "@@X@@"), "@@X@@", "A"+badUTF8, 1), "beneficiary.name"),
		file("lone surrogate in justification", raw("justification", `"bad \ud800 escape"`), "justification"),
		file("date_of_birth not a date", with("beneficiary.date_of_birth", "12/31/1990"), "beneficiary.date_of_birth"),
		file("date_of_birth 30 February", with("beneficiary.date_of_birth", "1990-02-30"), "beneficiary.date_of_birth"),
		file("date_of_birth without zero padding", with("beneficiary.date_of_birth", "1990-1-5"), "beneficiary.date_of_birth"),
		file("date_of_birth with a time", with("beneficiary.date_of_birth", "1990-01-05T00:00:00Z"), "beneficiary.date_of_birth"),
		file("payee_id not an id", with("payee_id", "not-a-payee"), "payee_id"),
		file("payee_id of no payee", with("payee_id", nobody), "payee_id"),
		bad{name: "another post's filing", user: "ana", method: http.MethodPost, path: "/v1/requests", body: with("post", "IND-MUMBAI"), status: 403},
		bad{name: "an approver files", user: "olu", method: http.MethodPost, path: "/v1/requests", body: validJSON, status: 403},
		bad{name: "no token", method: http.MethodPost, path: "/v1/requests", body: validJSON, status: 401},
		bad{name: "bad token", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{"Authorization": "Bearer eva_nope"}, status: 401},
		bad{name: "basic auth", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{"Authorization": "Basic YW5hOmRlbW8="}, status: 401},
		bad{name: "no Content-Type", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{ct: ""}, status: 400, field: ct},
		bad{name: "text/plain", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{ct: "text/plain"}, status: 400, field: ct},
		bad{name: "form Content-Type", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{ct: "application/x-www-form-urlencoded"}, status: 400, field: ct},
		bad{name: "latin-1 charset", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{ct: "application/json; charset=latin1"}, status: 400, field: ct},
		bad{name: "garbled Content-Type", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{ct: "application/json; ;;=="}, status: 400, field: ct},
		bad{name: "oversized body", user: "ana", method: http.MethodPost, path: "/v1/requests", body: with("justification", strings.Repeat("x", 70<<10)), status: 413},
		bad{name: "blank Idempotency-Key", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{idem: " "}, status: 400, field: idem},
		bad{name: "long Idempotency-Key", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{idem: strings.Repeat("k", 256)}, status: 400, field: idem},
		bad{name: "Idempotency-Key with a space", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{idem: "a b"}, status: 400, field: idem},
		bad{name: "non-ASCII Idempotency-Key", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{idem: "clé"}, status: 400, field: idem},
		bad{name: "Idempotency-Key twice", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, raw: http.Header{idem: {"k1", "k2"}}, status: 400, field: idem},
		bad{name: "Idempotency-Key reused with another body", user: "ana", method: http.MethodPost, path: "/v1/requests", body: validJSON, header: map[string]string{idem: setupKey}, status: 422},
		bad{name: "Idempotency-Key reused on another route", user: "ana", method: http.MethodPost, path: "/v1/requests/" + S + "/withdraw", body: `{"reason":"x"}`, header: map[string]string{idem: setupKey}, status: 422, last: true},
		bad{name: "PUT on requests", user: "ana", method: http.MethodPut, path: "/v1/requests", body: validJSON, status: 405},
	)

	// POST /v1/requests/{id}/amend, withdraw, info (ana, on S).
	amend := func(name, body, field string) bad {
		return req400(name, "ana", "/v1/requests/"+S+"/amend", body, field)
	}
	table = append(table,
		amend("nothing to change", `{}`, "body"),
		amend("empty body", ``, "body"),
		amend("malformed JSON", `{"urgency":`, "body"),
		amend("unknown field", `{"status":"approved"}`, "status"),
		amend("bad category", `{"category":"yacht"}`, "category"),
		amend("bad urgency", `{"urgency":"later"}`, "urgency"),
		amend("negative amount", `{"amount_usd_cents":-1}`, "amount_usd_cents"),
		amend("zero amount", `{"amount_usd_cents":0}`, "amount_usd_cents"),
		amend("float amount", `{"amount_usd_cents":1.25}`, "amount_usd_cents"),
		amend("amount over the cap", `{"amount_usd_cents":500001}`, "amount_usd_cents"),
		amend("category whose cap the amount exceeds", `{"category":"travel_documents"}`, "category"),
		amend("justification too long", `{"justification":"`+long(4001)+`"}`, "justification"),
		amend("blank justification", `{"justification":" "}`, "justification"),
		amend("beneficiary without reference", `{"beneficiary":{"name":"X"}}`, "beneficiary.reference"),
		amend("bad date_of_birth", `{"beneficiary":{"reference":"R","date_of_birth":"1990-13-01"}}`, "beneficiary.date_of_birth"),
		amend("number for payee_id", `{"payee_id":12}`, "payee_id"),
		bad{name: "amend: another post's requester", user: "raj", method: http.MethodPost, path: "/v1/requests/" + S + "/amend", body: `{"urgency":"critical"}`, status: 404},
		bad{name: "amend: no such request", user: "ana", method: http.MethodPost, path: "/v1/requests/" + nobody + "/amend", body: `{"urgency":"critical"}`, status: 404},
		req400("withdraw: no reason", "ana", "/v1/requests/"+S+"/withdraw", `{}`, "reason"),
		req400("withdraw: empty body", "ana", "/v1/requests/"+S+"/withdraw", ``, "body"),
		req400("withdraw: blank reason", "ana", "/v1/requests/"+S+"/withdraw", `{"reason":"  "}`, "reason"),
		req400("withdraw: number reason", "ana", "/v1/requests/"+S+"/withdraw", `{"reason":1}`, "reason"),
		req400("withdraw: reason too long", "ana", "/v1/requests/"+S+"/withdraw", `{"reason":"`+long(2001)+`"}`, "reason"),
		req400("withdraw: unknown field", "ana", "/v1/requests/"+S+"/withdraw", `{"reason":"x","force":true}`, "force"),
		req400("info: number answer", "ana", "/v1/requests/"+S+"/info", `{"answer":1}`, "answer"),
		req400("info: unknown field", "ana", "/v1/requests/"+S+"/info", `{"answer":"a","question":"q"}`, "question"),
		bad{name: "info: not asked", user: "ana", method: http.MethodPost, path: "/v1/requests/" + S + "/info", body: `{"answer":"here"}`, status: 409},
	)

	// Review routes (olu; C is claimed by olu, S is not claimed).
	approve := func(name, body, field string) bad {
		return req400(name, "olu", "/v1/requests/"+C+"/approve", body, field)
	}
	fj := func(amount string) string { return `{"amount_usd_cents":` + amount + `,"fund_id":"` + fund.ID + `"}` }
	table = append(table,
		req400("claim: unknown field", "olu", "/v1/requests/"+S+"/claim", `{"x":1}`, "x"),
		req400("claim: array body", "olu", "/v1/requests/"+S+"/claim", `[1]`, "body"),
		req400("claim: malformed JSON", "olu", "/v1/requests/"+S+"/claim", `{`, "body"),
		req400("release: unknown field", "olu", "/v1/requests/"+C+"/release", `{"x":1}`, "x"),
		approve("empty object", `{}`, "amount_usd_cents"),
		approve("empty body", ``, "body"),
		approve("zero amount", fj("0"), "amount_usd_cents"),
		approve("negative amount", fj("-5"), "amount_usd_cents"),
		approve("float amount", fj("99.5"), "amount_usd_cents"),
		approve("string amount", fj(`"100"`), "amount_usd_cents"),
		approve("huge amount", fj("99999999999999999999"), "amount_usd_cents"),
		approve("more than requested", fj("80001"), "amount_usd_cents"),
		approve("no fund", `{"amount_usd_cents":100}`, "fund_id"),
		approve("number for fund_id", `{"amount_usd_cents":100,"fund_id":7}`, "fund_id"),
		approve("fund_id not an id", `{"amount_usd_cents":100,"fund_id":"EVA-DEMO"}`, "fund_id"),
		approve("fund_id of no fund", `{"amount_usd_cents":100,"fund_id":"`+nobody+`"}`, "fund_id"),
		approve("payee_id not an id", `{"amount_usd_cents":100,"fund_id":"`+fund.ID+`","payee_id":"nope"}`, "payee_id"),
		approve("note too long", `{"amount_usd_cents":100,"fund_id":"`+fund.ID+`","note":"`+long(2001)+`"}`, "note"),
		approve("unknown field", `{"amount_usd_cents":100,"fund_id":"`+fund.ID+`","approved":true}`, "approved"),
		lastRow(approve("non-UTF-8 note", `{"amount_usd_cents":100,"fund_id":"`+fund.ID+`","note":"`+badUTF8+`"}`, "note")),
		bad{name: "approve: not claimed", user: "olu", method: http.MethodPost, path: "/v1/requests/" + S + "/approve", body: fj("100"), status: 409},
		bad{name: "approve: claimed by another", user: "mei", method: http.MethodPost, path: "/v1/requests/" + C + "/approve", body: fj("100"), status: 409},
		bad{name: "approve: no such request", user: "olu", method: http.MethodPost, path: "/v1/requests/" + nobody + "/approve", body: fj("100"), status: 404},
		bad{name: "approve: a requester", user: "ana", method: http.MethodPost, path: "/v1/requests/" + C + "/approve", body: fj("100"), status: 403},
		bad{name: "approve: the auditor", user: "aud", method: http.MethodPost, path: "/v1/requests/" + C + "/approve", body: fj("100"), status: 403},
		bad{name: "claim: already claimed", user: "mei", method: http.MethodPost, path: "/v1/requests/" + C + "/claim", status: 409},
		bad{name: "claim: disbursed", user: "mei", method: http.MethodPost, path: "/v1/requests/" + D + "/claim", status: 409},
		bad{name: "release: not holding", user: "mei", method: http.MethodPost, path: "/v1/requests/" + C + "/release", status: 409},
		req400("reject: no reason", "olu", "/v1/requests/"+C+"/reject", `{}`, "reason"),
		req400("reject: blank reason", "olu", "/v1/requests/"+C+"/reject", `{"reason":"\t "}`, "reason"),
		req400("reject: reason too long", "olu", "/v1/requests/"+C+"/reject", `{"reason":"`+long(2001)+`"}`, "reason"),
		req400("reject: number reason", "olu", "/v1/requests/"+C+"/reject", `{"reason":false}`, "reason"),
		req400("request-info: no question", "olu", "/v1/requests/"+C+"/request-info", `{}`, "question"),
		req400("request-info: question too long", "olu", "/v1/requests/"+C+"/request-info", `{"question":"`+long(2001)+`"}`, "question"),
		req400("request-info: unknown field", "olu", "/v1/requests/"+C+"/request-info", `{"q":"?"}`, "q"),
	)

	// Money (fin).
	table = append(table,
		req400("fund: empty object", "fin", "/v1/funds", `{}`, "name"),
		req400("fund: empty body", "fin", "/v1/funds", ``, "body"),
		req400("fund: no allocation", "fin", "/v1/funds", `{"name":"F1"}`, "allocated_usd_cents"),
		req400("fund: negative allocation", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":-1}`, "allocated_usd_cents"),
		req400("fund: zero allocation", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":0}`, "allocated_usd_cents"),
		req400("fund: float allocation", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":1.5}`, "allocated_usd_cents"),
		req400("fund: string allocation", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":"100"}`, "allocated_usd_cents"),
		req400("fund: huge allocation", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":1e30}`, "allocated_usd_cents"),
		req400("fund: blank name", "fin", "/v1/funds", `{"name":"  ","allocated_usd_cents":100}`, "name"),
		req400("fund: name too long", "fin", "/v1/funds", `{"name":"`+long(129)+`","allocated_usd_cents":100}`, "name"),
		req400("fund: non-UTF-8 name", "fin", "/v1/funds", `{"name":"F`+badUTF8+`","allocated_usd_cents":100}`, "name"),
		req400("fund: unknown field", "fin", "/v1/funds", `{"name":"F1","allocated_usd_cents":100,"paid_usd_cents":0}`, "paid_usd_cents"),
		bad{name: "fund: name in use", user: "fin", method: http.MethodPost, path: "/v1/funds", body: `{"name":"EVA-DEMO","allocated_usd_cents":100}`, status: 409},
		bad{name: "fund: an approver", user: "olu", method: http.MethodPost, path: "/v1/funds", body: `{"name":"F1","allocated_usd_cents":100}`, status: 403},
		req400("payee: empty object", "fin", "/v1/payees", `{}`, "name"),
		req400("payee: no account", "fin", "/v1/payees", `{"name":"P1"}`, "account"),
		req400("payee: account too long", "fin", "/v1/payees", `{"name":"P1","account":"`+long(129)+`"}`, "account"),
		req400("payee: country too long", "fin", "/v1/payees", `{"name":"P1","account":"A1","country":"`+long(65)+`"}`, "country"),
		req400("payee: number for name", "fin", "/v1/payees", `{"name":1,"account":"A1"}`, "name"),
		req400("payee: unknown field", "fin", "/v1/payees", `{"name":"P1","account":"A1","iban":"X"}`, "iban"),
		bad{name: "payee: a requester", user: "ana", method: http.MethodPost, path: "/v1/payees", body: `{"name":"P1","account":"A1"}`, status: 403},
		req400("retry: unknown field", "fin", "/v1/payouts/"+P+"/retry", `{"x":1}`, "x"),
		bad{name: "retry: settled payout", user: "fin", method: http.MethodPost, path: "/v1/payouts/" + P + "/retry", status: 409},
		req400("cancel: number reason", "fin", "/v1/payouts/"+P+"/cancel", `{"reason":1}`, "reason"),
		req400("cancel: unknown field", "fin", "/v1/payouts/"+P+"/cancel", `{"why":"x"}`, "why"),
		bad{name: "cancel: settled payout", user: "fin", method: http.MethodPost, path: "/v1/payouts/" + P + "/cancel", body: `{"reason":"changed my mind"}`, status: 409},
		bad{name: "retry: no such payout", user: "fin", method: http.MethodPost, path: "/v1/payouts/" + nobody + "/retry", status: 404},
	)

	// Ids in paths that cannot name anything: 404 problems.
	for _, p := range []struct{ user, method, path string }{
		{"olu", http.MethodGet, "/v1/requests/42"},
		{"olu", http.MethodGet, "/v1/requests/" + strings.ToUpper(S)},
		{"olu", http.MethodGet, "/v1/requests/" + strings.ReplaceAll(S, "-", "")},
		{"olu", http.MethodGet, "/v1/requests/%7B" + S + "%7D"},
		{"olu", http.MethodGet, "/v1/requests/" + nobody},
		{"aud", http.MethodGet, "/v1/requests/x/history"},
		{"aud", http.MethodGet, "/v1/requests/" + nobody + "/history"},
		{"aud", http.MethodGet, "/v1/requests/x/as-of?t=2025-01-01T00:00:00Z"},
		{"olu", http.MethodPost, "/v1/requests/not-a-uuid/claim"},
		{"olu", http.MethodPost, "/v1/requests/" + nobody + "/claim"},
		{"ana", http.MethodPost, "/v1/requests/%27%3B--/withdraw"},
		{"fin", http.MethodGet, "/v1/funds/EVA-DEMO"},
		{"fin", http.MethodGet, "/v1/funds/" + nobody},
		{"fin", http.MethodGet, "/v1/funds/" + strings.Repeat("f", 300)},
		{"fin", http.MethodGet, "/v1/payees/x"},
		{"fin", http.MethodGet, "/v1/payees/" + nobody},
		{"fin", http.MethodPost, "/v1/payouts/%3Cscript%3E/retry"},
		{"fin", http.MethodPost, "/v1/payouts/x/cancel"},
		{"olu", http.MethodGet, "/v1/nothing-here"},
	} {
		b := bad{name: "bad id", user: p.user, method: p.method, path: p.path, status: 404}
		if p.method == http.MethodPost {
			b.body = `{"reason":"r"}`
			if strings.HasSuffix(p.path, "/claim") {
				b.body = ""
			}
		}
		table = append(table, b)
	}

	// Query parameters of the GET lists: 400 naming the parameter.
	for _, q := range []struct{ user, path, field string }{
		{"olu", "/v1/requests?limit=0", "limit"},
		{"olu", "/v1/requests?limit=501", "limit"},
		{"olu", "/v1/requests?limit=-1", "limit"},
		{"olu", "/v1/requests?limit=ten", "limit"},
		{"olu", "/v1/requests?limit=1.5", "limit"},
		{"olu", "/v1/requests?limit=99999999999999999999", "limit"},
		{"olu", "/v1/requests?limit=1&limit=2", "limit"},
		{"olu", "/v1/requests?cursor=not-a-cursor", "cursor"},
		{"olu", "/v1/requests?cursor=" + strings.Repeat("c", 2000), "cursor"},
		{"olu", "/v1/requests?status=lost", "status"},
		{"olu", "/v1/requests?urgency=soon", "urgency"},
		{"olu", "/v1/requests?post=" + strings.Repeat("P", 65), "post"},
		{"ana", "/v1/requests?limit=0", "limit"},
		{"olu", "/v1/queue?limit=0", "limit"},
		{"olu", "/v1/queue?cursor=%00%01", "cursor"},
		{"fin", "/v1/funds?limit=1000", "limit"},
		{"fin", "/v1/funds?cursor=zzz", "cursor"},
		{"fin", "/v1/payees?limit=x", "limit"},
		{"fin", "/v1/payees?cursor=zzz", "cursor"},
		{"fin", "/v1/payouts?request=42", "request"},
		{"fin", "/v1/payouts?status=lost", "status"},
		{"fin", "/v1/payouts?cursor=zzz", "cursor"},
		{"aud", "/v1/requests/" + S + "/as-of", "t"},
		{"aud", "/v1/requests/" + S + "/as-of?t=yesterday", "t"},
		{"aud", "/v1/requests/" + S + "/as-of?t=2025-03-01", "t"},
		{"aud", "/v1/requests/" + S + "/as-of?t=1700000000", "t"},
		{"aud", "/v1/audit/events?after=-1", "after"},
		{"aud", "/v1/audit/events?after=x", "after"},
		{"aud", "/v1/audit/events?limit=0", "limit"},
		{"aud", "/v1/audit/events?limit=100000", "limit"},
		{"aud", "/v1/audit/export?format=xml", "format"},
		{"aud", "/v1/audit/export?format=", ""},
		{"aud", "/v1/audit/access", "case"},
		{"aud", "/v1/audit/access?case=42", "case"},
	} {
		if q.field == "" {
			continue // an empty format is the default (jsonl): not bad
		}
		table = append(table, bad{name: "bad query", user: q.user, method: http.MethodGet, path: q.path, status: 400, field: q.field})
	}

	// Credentials and roles on reads.
	table = append(table,
		bad{name: "no token", method: http.MethodGet, path: "/v1/requests", status: 401},
		bad{name: "no token", method: http.MethodGet, path: "/v1/me", status: 401},
		bad{name: "bad token", method: http.MethodGet, path: "/v1/funds", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("x", 5000)}, status: 401},
		bad{name: "empty bearer", method: http.MethodGet, path: "/v1/funds", header: map[string]string{"Authorization": "Bearer "}, status: 401},
		bad{name: "requester reads the queue", user: "ana", method: http.MethodGet, path: "/v1/queue", status: 403},
		bad{name: "requester reads funds", user: "ana", method: http.MethodGet, path: "/v1/funds", status: 403},
		bad{name: "requester reads the audit", user: "ana", method: http.MethodGet, path: "/v1/audit/events", status: 403},
		bad{name: "requester reads as-of", user: "ana", method: http.MethodGet, path: "/v1/requests/" + S + "/as-of?t=2025-01-01T00:00:00Z", status: 403},
		bad{name: "another post's case", user: "raj", method: http.MethodGet, path: "/v1/requests/" + S, status: 404},
		bad{name: "another post's personal data", user: "raj", method: http.MethodGet, path: "/v1/requests/" + S + "/beneficiary", status: 404},
		req400("sign in: empty object", "", "/v1/auth/token", `{}`, "username"),
		req400("sign in: no password", "", "/v1/auth/token", `{"username":"nobody"}`, "password"),
		req400("sign in: malformed", "", "/v1/auth/token", `{"username":`, "body"),
		req400("sign in: unknown field", "", "/v1/auth/token", `{"username":"nobody","password":"x","otp":1}`, "otp"),
		req400("sign in: long username", "", "/v1/auth/token", `{"username":"`+strings.Repeat("u", 65)+`","password":"x"}`, "username"),
		bad{name: "sign in: wrong password", method: http.MethodPost, path: "/v1/auth/token", body: `{"username":"nobody","password":"x"}`, status: 401},
		bad{name: "sign in: oversized", method: http.MethodPost, path: "/v1/auth/token", body: `{"username":"` + strings.Repeat("u", 70<<10) + `","password":"x"}`, status: 413},
	)

	slices.SortStableFunc(table, func(a, b bad) int {
		switch {
		case a.last == b.last:
			return 0
		case b.last:
			return -1
		}
		return 1
	})
	for _, b := range table {
		name := fmt.Sprintf("%s %s as %q: %s", b.method, shorten(b.path), b.user, b.name)
		r := req{user: b.user, method: b.method, path: b.path, header: b.header, rawHeader: b.raw}
		if b.body != "" || b.method == http.MethodPost {
			r.body = b.body
		}
		resp := c.do(r)
		switch {
		case resp.Status >= 500:
			t.Errorf("%s: %s: a 5xx for bad input", name, shortResp(resp))
			continue
		case resp.Status != b.status:
			t.Errorf("%s: %s, want %d", name, shortResp(resp), b.status)
			if resp.Status < 400 {
				continue
			}
		}
		field := ""
		if resp.Status == http.StatusBadRequest {
			field = b.field
		}
		checkProblem(t, name, resp, field)
	}
	t.Logf("%d bad inputs sent", len(table))

	after := takeSnapshot(t, c)
	if !reflect.DeepEqual(before, after) {
		t.Errorf("bad input changed something: %s", diffSnapshots(before, after))
	}
}

// diffSnapshots says what changed, part by part.
func diffSnapshots(a, b snapshot) string {
	var out []string
	if a.Checkpoint != b.Checkpoint || a.Events != b.Events {
		out = append(out, fmt.Sprintf("audit checkpoint %d → %d, events %d → %d", a.Checkpoint, b.Checkpoint, a.Events, b.Events))
	}
	if !reflect.DeepEqual(a.Funds, b.Funds) {
		out = append(out, fmt.Sprintf("funds %+v → %+v", a.Funds, b.Funds))
	}
	for id, st := range b.Requests {
		if was, ok := a.Requests[id]; !ok {
			out = append(out, fmt.Sprintf("new request %s (%s)", id, st))
		} else if was != st {
			out = append(out, fmt.Sprintf("request %s %s → %s", id, was, st))
		}
	}
	if len(a.Payouts) != len(b.Payouts) || !reflect.DeepEqual(a.Payouts, b.Payouts) {
		out = append(out, fmt.Sprintf("payouts %d → %d", len(a.Payouts), len(b.Payouts)))
	}
	if !reflect.DeepEqual(a.Payees, b.Payees) {
		out = append(out, fmt.Sprintf("payees %d → %d", len(a.Payees), len(b.Payees)))
	}
	if a.QueueLength != b.QueueLength {
		out = append(out, fmt.Sprintf("queue length %d → %d", a.QueueLength, b.QueueLength))
	}
	return "\n\t" + strings.Join(out, "\n\t")
}

// snapshot is what bad input must not change.
type snapshot struct {
	Checkpoint  uint64
	Events      uint64
	Funds       []fundJSON
	Requests    map[string]string // id → status@version
	RequestsN   int
	Payouts     []payoutJSON
	Payees      []payeeJSON
	QueueLength int
}

func takeSnapshot(t *testing.T, c *client) snapshot {
	t.Helper()
	v := c.waitVerified(30 * time.Second)
	var s snapshot
	s.Events = v.Events
	// The checkpoint follows the archive; wait until it covers it.
	evatest.Await(t, 30*time.Second, "the checkpoint to cover the archive", func() (bool, string) {
		size, _ := c.checkpoint()
		s.Checkpoint = size
		return size == v.Events, fmt.Sprintf("checkpoint %d, archive %d", size, v.Events)
	})
	s.Funds = get[pageJSON[fundJSON]](c, "fin", "/v1/funds?limit=500", http.StatusOK).Items
	s.Requests = map[string]string{}
	reqs := get[pageJSON[caseJSON]](c, "olu", "/v1/requests?limit=500", http.StatusOK).Items
	for _, cs := range reqs {
		s.Requests[cs.ID] = fmt.Sprintf("%s@%d", cs.Status, cs.Version)
	}
	s.RequestsN = len(reqs)
	s.Payouts = get[pageJSON[payoutJSON]](c, "fin", "/v1/payouts?limit=500", http.StatusOK).Items
	s.Payees = get[pageJSON[payeeJSON]](c, "fin", "/v1/payees?limit=500", http.StatusOK).Items
	s.QueueLength = len(get[pageJSON[caseJSON]](c, "olu", "/v1/queue?limit=500", http.StatusOK).Items)
	return s
}

func shorten(s string) string {
	if len(s) > 90 {
		return s[:90] + "…"
	}
	return s
}

func shortResp(r *response) string {
	s := r.String()
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

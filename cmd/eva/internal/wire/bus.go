package wire

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/eva-org/eva/pkg/assist"
	"github.com/eva-org/eva/pkg/devcerts"
	"github.com/eva-org/eva/pkg/eventlog"
	"github.com/eva-org/eva/pkg/natsx"
	"github.com/eva-org/eva/pkg/timers"
	"github.com/eva-org/eva/services/approval"
)

// Who may do what on the bus (ADR 16). Each service connects as itself;
// admin is the tools (migrate, seed, audit verify), which manage the
// streams.
const busAdmin = "admin"

// busIdentities are every identity on the bus.
func busIdentities() []string { return append(Services(), busAdmin) }

// eventOwners names, for each kind, the service that appends each event
// type ("*": every type of the kind). Only the owner may publish on
// eva.<kind>.<id>.<Type>.
var eventOwners = map[assist.Kind]map[string]string{
	assist.KindCase: {
		"RequestSubmitted": "intake", "RequestAmended": "intake", "RequestWithdrawn": "intake", "InfoProvided": "intake",
		"PersonalDataErased": "intake",
		"ReviewClaimed":      "approval", "ReviewReleased": "approval", "RequestApproved": "approval",
		"RequestRejected": "approval", "InfoRequested": "approval", "DeadlineMissed": "approval", "ClaimExpired": "approval",
		"DeadlineWarning": "approval",
		"FundsReserved":   "disbursement", "FundsReleased": "disbursement", "PayoutSent": "disbursement",
		"PayoutSettled": "disbursement", "PayoutFailed": "disbursement", "PayoutRetried": "disbursement", "RequestClosed": "disbursement",
	},
	assist.KindFund:    {"*": "disbursement"},
	assist.KindPayee:   {"*": "disbursement"},
	assist.KindPolicy:  {"*": "approval"},
	assist.KindWebhook: {"*": "notify"},
	// Accounts live in the gateway's store; it appends their events
	// from its outbox (ADR 26).
	assist.KindUser: {"*": "gateway"},
}

// ownStreams are the streams a service makes and manages itself, with
// the subjects it publishes on them (approval's timers, ADR 12).
var ownStreams = map[string][]struct{ stream, subjects string }{
	"approval": {{timers.Stream, "eva.timer.>"}},
}

// readStreams are the streams beside the event log that a service reads:
// the audit archives and lists the access log and lists the dead letters;
// approval runs its timers. No other service reads them: who read which
// case's personal data, and the events that failed, are the auditor's.
var readStreams = map[string][]string{
	"audit":    {eventlog.AccessStream, eventlog.DLQStream},
	"approval": {timers.Stream},
}

// readAPI is the JetStream API a reader of stream uses: the stream's
// info, its messages by sequence or subject, and consumers of it (made,
// looked at, pulled from).
func readAPI(stream string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + stream,
		"$JS.API.STREAM.MSG.GET." + stream,
		"$JS.API.DIRECT.GET." + stream,
		"$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.CONSUMER.CREATE." + stream,
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".*",
		"$JS.API.CONSUMER.INFO." + stream + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + stream + ".*",
	}
}

// retiredConsumers are the log's consumers that a service ran under
// another name than its own and deletes when it starts.
var retiredConsumers = map[string][]string{
	"approval": {approval.FormerSchedulerName}, // each case's timers, before ADR 45
}

// internalCalls are the endpoints only services call: the gateway may not
// (a payee lookup is also the API's GET /v1/payees/{id}, so it is not one).
var internalCalls = []string{"eva.disbursement.hold_place", "eva.disbursement.hold_release"}

// calls are the service endpoints a service calls itself (beside the
// gateway, which calls every service).
var calls = map[string][]string{
	"intake":   {"eva.disbursement.payees_get"},
	"approval": {"eva.disbursement.hold_place", "eva.disbursement.hold_release"},
}

// busUser is what identity name may do on the bus.
//
// Every service: serve its own endpoints (eva.<name>.*, and micro's
// $SRV.>) and answer the requests it received; append the events it
// owns; read the event log, and the streams readStreams gives it, and
// run its consumers on them; dead-letter. The
// gateway: send every user-facing command and query, and append the
// events of the accounts it keeps (KindUser).
// Admin: everything.
func busUser(name, publicKey string) natsx.User {
	u := natsx.User{Name: name, PublicKey: publicKey}
	if name == busAdmin {
		u.Publish, u.Subscribe, u.Responds = []string{">"}, []string{">"}, true
		return u
	}
	// Read the event log and the streams it needs besides; run consumers
	// on them; ack.
	u.Publish = []string{"$JS.API.INFO", "$JS.ACK.>", "$JS.FC.>"}
	for _, stream := range append([]string{eventlog.Stream}, readStreams[name]...) {
		u.Publish = append(u.Publish, readAPI(stream)...)
	}
	if name == "gateway" {
		for _, svc := range Services() {
			if svc != "gateway" {
				u.Publish = append(u.Publish, "eva."+svc+".>")
			}
		}
		// Only a service's own work may call these.
		u.DenyPublish = slices.Sorted(slices.Values(internalCalls))
		u.Publish = append(u.Publish, ownedEvents(name)...)
		slices.Sort(u.Publish)
		return u
	}
	u.Responds = true
	u.Subscribe = []string{"eva." + name + ".>", "$SRV.>"}
	// Its durable consumer is named after it; it may delete it (a former
	// consumer, when a projection changes).
	u.Publish = append(u.Publish, "$JS.API.CONSUMER.DELETE.*."+name)
	for _, c := range retiredConsumers[name] {
		u.Publish = append(u.Publish, "$JS.API.CONSUMER.DELETE."+eventlog.Stream+"."+c)
	}
	u.Publish = append(u.Publish, calls[name]...)
	u.Publish = append(u.Publish, eventlog.DLQPrefix+">")
	for _, o := range ownStreams[name] {
		u.Publish = append(u.Publish, o.subjects, "$JS.API.STREAM.CREATE."+o.stream, "$JS.API.STREAM.UPDATE."+o.stream,
			"$JS.API.STREAM.PURGE."+o.stream)
	}
	if name == "intake" {
		u.Publish = append(u.Publish, eventlog.AccessPrefix+">") // reads of personal data
	}
	u.Publish = append(u.Publish, ownedEvents(name)...)
	slices.Sort(u.Publish)
	return u
}

// ownedEvents are the event subjects service name may append on.
func ownedEvents(name string) []string {
	var out []string
	for _, kind := range slices.Sorted(maps.Keys(eventOwners)) {
		for typ, owner := range eventOwners[kind] {
			if owner == name {
				out = append(out, "eva."+string(kind)+".*."+typ)
			}
		}
	}
	return out
}

// busKeys reads the NKey seeds of every identity from dir, making those
// that are missing (dev: the embedded server's users).
func busKeys(dir string) (map[string]string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats keys: %w", err)
	}
	seeds := map[string]string{}
	for _, name := range busIdentities() {
		path := filepath.Join(dir, name+".nk")
		data, err := os.ReadFile(path)
		if errors.Is(err, os.ErrNotExist) {
			seed, _, err := natsx.NewUserKey()
			if err != nil {
				return nil, err
			}
			data = []byte(seed)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				return nil, fmt.Errorf("write nats key: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("read nats key: %w", err)
		}
		seeds[name] = strings.TrimSpace(string(data))
	}
	return seeds, nil
}

// busUsers are the users of every identity whose seed is in seeds.
func busUsers(seeds map[string]string) ([]natsx.User, error) {
	var users []natsx.User
	for _, name := range busIdentities() {
		pub, err := natsx.PublicKeyOf(seeds[name])
		if err != nil {
			return nil, fmt.Errorf("nats key of %s: %w", name, err)
		}
		users = append(users, busUser(name, pub))
	}
	return users, nil
}

// Appenders are the services that may publish on an event subject.
func Appenders(subject string) []string {
	kind, _, typ, ok := eventlog.ParseSubjectOf(subject)
	if !ok {
		return nil
	}
	var out []string
	for _, svc := range Services() {
		if owner, ok := eventOwners[kind][typ]; ok && owner == svc {
			out = append(out, svc)
		} else if owner, ok := eventOwners[kind]["*"]; ok && owner == svc {
			out = append(out, svc)
		}
	}
	return out
}

// DevCerts writes, in dir, what a NATS deployment of EVA needs to run
// with authentication and TLS (ADR 16): a development CA and a server
// certificate for hosts (devcerts), each identity's NKey seed in
// nkeys/<name>.nk (kept if present) and as .env lines in nkeys.env, and
// auth.conf, the nats-server
// authorization of those users, to include in the servers' configuration.
//
// Errors: a file could not be made or written.
func DevCerts(dir string, hosts []string) error {
	if _, err := devcerts.Write(dir, hosts); err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	seeds, err := busKeys(filepath.Join(dir, "nkeys"))
	if err != nil {
		return err
	}
	users, err := busUsers(seeds)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), authConf(users), 0o644); err != nil {
		return err
	}
	// The same seeds as .env lines, for docker compose to hand each
	// service its own (EVA_NKEY_<NAME>).
	var env strings.Builder
	for _, name := range busIdentities() {
		fmt.Fprintf(&env, "EVA_NKEY_%s=%s\n", strings.ToUpper(name), seeds[name])
	}
	return os.WriteFile(filepath.Join(dir, "nkeys.env"), []byte(env.String()), 0o600)
}

// authConf renders users as a nats-server authorization block.
func authConf(users []natsx.User) []byte {
	var b strings.Builder
	b.WriteString("# EVA's NATS users and what each may do (ADR 16). Made by `eva dev-certs`; do not edit.\n")
	b.WriteString("authorization {\n  users = [\n")
	list := func(l []string) string {
		q := make([]string, len(l))
		for i, s := range l {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	for _, u := range users {
		p := u.Permissions()
		deny := ""
		if len(p.Publish.Deny) > 0 {
			deny = ", deny: " + list(p.Publish.Deny)
		}
		fmt.Fprintf(&b, "    # %s\n    {nkey: %q, permissions: {\n      publish: {allow: %s%s}\n      subscribe: {allow: %s}\n",
			u.Name, u.PublicKey, list(p.Publish.Allow), deny, list(p.Subscribe.Allow))
		if p.Response != nil {
			fmt.Fprintf(&b, "      allow_responses: {max: %d, expires: %q}\n", p.Response.MaxMsgs, p.Response.Expires.String())
		}
		b.WriteString("    }}\n")
	}
	b.WriteString("  ]\n}\n")
	return []byte(b.String())
}

package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash"
	"net/http"

	"github.com/google/uuid"

	"github.com/eva-org/eva/pkg/assist"
)

// command is what a command handler knows besides its body.
type command struct {
	// ID is the command id the services get: a fresh UUIDv7, or the one
	// first given to the request's Idempotency-Key.
	ID   string
	User Account
	// KeyHash is the SHA-256 of the user and the Idempotency-Key; nil
	// without one.
	KeyHash []byte
	// RequestHash identifies the request (method, path, body) that came
	// with the key.
	RequestHash []byte
}

// IdempotencyHeader is the request header that makes a POST idempotent.
const IdempotencyHeader = "Idempotency-Key"

// maxIdempotencyKey bounds the key's length.
const maxIdempotencyKey = 255

// handleCommand makes a POST route out of do, answering 200 with its Out.
// Every command takes the same steps:
//
//  1. the Idempotency-Key, when sent, must be 1..255 visible ASCII
//     characters (else 400 naming "Idempotency-Key");
//  2. the body is read (at most Config.MaxBodyBytes, else 413) and decoded
//     strictly into an In (400 naming the field at fault);
//  3. without a key, do runs with a fresh UUIDv7 command id;
//  4. with a key, the gateway looks the key up for the user: unknown, it is
//     stored as pending with a fresh command id and do runs; known with
//     another request (method, path, body), 422; known and done, the stored
//     status and body are replayed byte for byte with Idempotent-Replayed:
//     true; known and pending (a crash, or a 5xx), do runs again with the
//     SAME command id, which the services de-duplicate on;
//  5. a 2xx or 4xx answer is stored for the key; a 5xx is not, so that a
//     retry runs the command again.
//
// Nothing is stored and no service is called when steps 1 or 2 fail.
func handleCommand[In, Out any](s *server, do func(r *http.Request, c command, in In) (Out, error)) operation {
	return commandOperation(s, false, http.StatusOK, nil, do)
}

// resource is an answer that can be read again at its location.
type resource interface{ location() string }

// handleCreate is handleCommand for a command that makes a resource: it
// answers 201 with the Out and Location: Out.location().
func handleCreate[In any, Out resource](s *server, do func(r *http.Request, c command, in In) (Out, error)) operation {
	return commandOperation(s, false, http.StatusCreated, Out.location, do)
}

// handleSelfIdempotent is handleCreate for a command whose service keeps
// the Idempotency-Key itself, in the same transaction as the command's
// first record (filing: intake records the key with the case it files),
// so that nothing is written before the command runs: the gateway passes
// the key and request hashes on. It still reads its own store first (a
// key used with another request is 422; a stored answer is replayed), and
// records the answer after answering, so that a key is one key across
// every route.
func handleSelfIdempotent[In any, Out resource](s *server, do func(r *http.Request, c command, in In) (Out, error)) operation {
	return commandOperation(s, true, http.StatusCreated, Out.location, do)
}

func commandOperation[In, Out any](s *server, selfIdempotent bool, status int, location func(Out) string,
	do func(r *http.Request, c command, in In) (Out, error)) operation {
	op := newOperation[noQuery, In, Out](status)
	op.idempotent, op.location = true, location != nil
	op.handler = func(w http.ResponseWriter, r *http.Request) {
		key, hasKey, err := idempotencyKey(r.Header)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		body, in, err := readRequest[In](r, s.cfg.MaxBodyBytes)
		if err != nil {
			writeProblem(w, r, err)
			return
		}
		c := command{ID: newCommandID(), User: userOf(r)}
		if hasKey {
			c.KeyHash = keyHash(c.User.Username, key)
			c.RequestHash = requestHash(r.Method, r.URL.Path, body)
		}
		if hasKey && selfIdempotent {
			rec, found, err := s.store.LookupIdem(r.Context(), c.User.Username, key)
			switch {
			case err != nil:
				writeProblem(w, r, err)
				return
			case found && !bytes.Equal(rec.RequestHash, c.RequestHash):
				writeProblem(w, r, assist.Errorf(assist.CodeIdempotencyMismatch,
					"this Idempotency-Key was used with another request; use a new key for a new request"))
				return
			case found && rec.Status == IdemDone:
				replay(w, rec)
				return
			}
		}
		if hasKey && !selfIdempotent {
			// Stored with the other requests' keys and answers under way
			// (answers.begin), before the command runs.
			begun, err := s.answers.begin(context.WithoutCancel(r.Context()), IdemRecord{Username: c.User.Username, Key: key,
				RequestHash: c.RequestHash, CommandID: c.ID, Status: IdemPending, CreatedAt: s.now()})
			rec := begun.Rec
			switch {
			case err != nil:
				writeProblem(w, r, err)
				return
			case !bytes.Equal(rec.RequestHash, c.RequestHash):
				writeProblem(w, r, assist.Errorf(assist.CodeIdempotencyMismatch,
					"this Idempotency-Key was used with another request; use a new key for a new request"))
				return
			case rec.Status == IdemDone:
				replay(w, rec)
				return
			}
			c.ID = rec.CommandID
		}
		status, header, out := render(r, c, in, do, status, location)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		_, _ = w.Write(out)
		if hasKey && status < 500 {
			// Stored after answering, to keep the commit off the client's
			// wait: until it is stored the key stays pending (or, for a
			// self-idempotent command, is kept by its service), and a
			// retry runs the command again under the same command id,
			// which the services de-duplicate.
			if f, ok := w.(http.Flusher); ok {
				f.Flush()
			}
			// A self-idempotent command's key gets its record now; another's
			// pending record is finished. The answers of concurrent requests
			// are stored together (answers.put).
			err := s.answers.put(context.WithoutCancel(r.Context()), IdemRecord{Username: c.User.Username, Key: key,
				RequestHash: c.RequestHash, CommandID: c.ID, Status: IdemDone, ResponseStatus: status, ResponseBody: out,
				ResponseLocation: header.Get("Location"), CreatedAt: s.now()})
			switch {
			case assist.IsCode(err, assist.CodeUnavailable):
				// The answer stands; the key stays pending and a retry
				// runs the command again under the same command id.
				noteOutage(r, fmt.Errorf("finish idempotency key: %w", err))
			case err != nil:
				noteError(r, err)
			}
		}
	}
	return op
}

// keyHash hashes an Idempotency-Key with its user: keys are per user.
func keyHash(username, key string) []byte {
	h := sha256.New()
	h.Write([]byte(username))
	h.Write([]byte{0})
	h.Write([]byte(key))
	return h.Sum(nil)
}

// render runs do and returns the response it makes: status with the Out,
// and Location when location is not nil, or the problem.
func render[In, Out any](r *http.Request, c command, in In, do func(*http.Request, command, In) (Out, error),
	status int, location func(Out) string) (int, http.Header, []byte) {
	v, err := do(r, c, in)
	if err != nil {
		return renderProblem(r, err)
	}
	body, err := json.Marshal(v)
	if err != nil {
		return renderProblem(r, err)
	}
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	if location != nil {
		h.Set("Location", location(v))
	}
	return status, h, append(body, '\n')
}

// replay answers with a stored response.
func replay(w http.ResponseWriter, rec IdemRecord) {
	ct := "application/json"
	if rec.ResponseStatus >= 400 {
		ct = "application/problem+json"
	}
	w.Header().Set("Content-Type", ct)
	if rec.ResponseLocation != "" {
		w.Header().Set("Location", rec.ResponseLocation)
	}
	w.Header().Set("Idempotent-Replayed", "true")
	w.WriteHeader(rec.ResponseStatus)
	_, _ = w.Write(rec.ResponseBody)
}

// idempotencyKey returns the request's Idempotency-Key.
//
// Errors: CodeInvalid naming "Idempotency-Key" when it is empty, longer
// than 255, not visible ASCII, or sent twice.
func idempotencyKey(h http.Header) (string, bool, error) {
	vals := h.Values(IdempotencyHeader)
	switch {
	case len(vals) == 0:
		return "", false, nil
	case len(vals) > 1:
		return "", false, invalid(IdempotencyHeader, "must be sent once")
	}
	k := vals[0]
	if k == "" || len(k) > maxIdempotencyKey || !visibleASCII(k) {
		return "", false, invalid(IdempotencyHeader, "must be 1 to %d visible ASCII characters", maxIdempotencyKey)
	}
	return k, true, nil
}

// requestHash identifies a request by method, path and body.
func requestHash(method, path string, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(method), []byte(path), body} {
		writeLenPrefixed(h, part)
	}
	return h.Sum(nil)
}

func writeLenPrefixed(h hash.Hash, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
}

func newCommandID() string {
	return uuid.Must(uuid.NewV7()).String()
}

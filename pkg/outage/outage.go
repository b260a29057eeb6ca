// Package outage logs an unavailable dependency once per outage rather
// than once per request: at most once per quiet period for each
// dependency, with the number of failures seen meanwhile.
package outage

import (
	"errors"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/eva-org/eva/pkg/assist"
)

// Quiet is the shortest time between two log lines about one dependency.
const Quiet = 10 * time.Second

// Log remembers, per dependency, when it last logged. The zero value is
// ready to use.
type Log struct {
	mu   sync.Mutex
	seen map[string]*seen
}

type seen struct {
	logged time.Time
	failed int
}

// Dependency names what an unavailable error says is down: the text of
// its message before the first colon ("database unavailable", "event
// log", "eva.intake.file").
func Dependency(err error) string {
	msg := err.Error()
	var ae *assist.Error
	if errors.As(err, &ae) {
		msg = ae.Message
	}
	dep, _, _ := strings.Cut(msg, ":")
	return dep
}

// Failed records a failure caused by err and logs it at warning level,
// with fields, unless this dependency was logged less than Quiet ago.
func (l *Log) Failed(zl *zap.Logger, msg string, err error, now time.Time, fields ...zap.Field) {
	dep := Dependency(err)
	l.mu.Lock()
	if l.seen == nil {
		l.seen = map[string]*seen{}
	}
	s := l.seen[dep]
	if s == nil {
		s = &seen{}
		l.seen[dep] = s
	}
	s.failed++
	due := now.Sub(s.logged) >= Quiet
	failed := s.failed
	if due {
		s.logged, s.failed = now, 0
	}
	l.mu.Unlock()
	if due {
		zl.Warn(msg, append(fields, zap.String("dependency", dep), zap.Int("failures", failed), zap.Error(err))...)
	}
}

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/pkg/sqldb/sqldbtest"
)

// pgServer is a PostgreSQL server of the test's own: the machine's
// PostgreSQL binaries run on a fresh data directory and a free port, so
// that a test may restart or kill it without disturbing anyone else's
// server. It runs as the postgres user (the server refuses root).
type pgServer struct {
	tb   testing.TB
	bin  string // the directory of pg_ctl, initdb, postgres
	dir  string // the data directory
	port int
	as   *user.User
}

// startPGServer initialises and starts a private server, stopped after the
// test. Without PostgreSQL's binaries or a postgres user it skips loudly,
// or fails when PostgreSQL is required (CI).
func startPGServer(tb testing.TB) *pgServer {
	tb.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	as, err := user.Lookup("postgres")
	if len(bins) == 0 || err != nil {
		msg := fmt.Sprintf("no PostgreSQL binaries (/usr/lib/postgresql/*/bin) or postgres user: %v", err)
		if sqldbtest.Required() {
			tb.Fatal(msg)
		}
		tb.Skip("SKIPPING: " + msg)
	}
	root, err := os.MkdirTemp("", "eva-pg-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	s := &pgServer{tb: tb, bin: filepath.Dir(bins[len(bins)-1]), dir: filepath.Join(root, "data"), as: as}
	uid, _ := strconv.Atoi(as.Uid)
	gid, _ := strconv.Atoi(as.Gid)
	if err := os.Chown(root, uid, gid); err != nil {
		tb.Fatalf("chown %s: %v", root, err)
	}
	s.run("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
	_, port, _ := net.SplitHostPort(evatest.FreeAddr(tb))
	s.port, _ = strconv.Atoi(port)
	s.start()
	tb.Cleanup(func() { s.stop("immediate") })
	s.run("psql", "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "-U", "postgres", "-d", "postgres", "-qc", "CREATE DATABASE eva")
	return s
}

// URL is the database eva of the server.
func (s *pgServer) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/eva?sslmode=disable", s.port)
}

// run runs a PostgreSQL program as the postgres user.
func (s *pgServer) run(program string, args ...string) {
	s.tb.Helper()
	cmd := exec.Command(filepath.Join(s.bin, program), args...)
	uid, _ := strconv.Atoi(s.as.Uid)
	gid, _ := strconv.Atoi(s.as.Gid)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	cmd.Dir = "/"
	if out, err := cmd.CombinedOutput(); err != nil {
		s.tb.Fatalf("%s %s: %v\n%s", program, strings.Join(args, " "), err, out)
	}
}

// start starts the server and waits until it accepts connections.
func (s *pgServer) start() {
	s.tb.Helper()
	s.run("pg_ctl", "-D", s.dir, "-l", filepath.Join(filepath.Dir(s.dir), "log"), "-w", "-t", "60", "start",
		"-o", fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on", s.port, filepath.Dir(s.dir)))
	evatest.Eventually(s.tb, "PostgreSQL to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// stop stops the server in mode: "fast" (clients disconnected, a clean
// shutdown) or "immediate" (no shutdown: crash recovery at the next start).
func (s *pgServer) stop(mode string) {
	s.tb.Helper()
	cmd := exec.Command(filepath.Join(s.bin, "pg_ctl"), "-D", s.dir, "-m", mode, "-w", "stop")
	uid, _ := strconv.Atoi(s.as.Uid)
	gid, _ := strconv.Atoi(s.as.Gid)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	cmd.Dir = "/"
	_ = cmd.Run() // stopping a stopped server is not a failure
}

// restart stops the server in mode and starts it again; it returns when
// the server accepts connections again.
func (s *pgServer) restart(mode string) {
	s.tb.Helper()
	s.stop(mode)
	s.start()
}

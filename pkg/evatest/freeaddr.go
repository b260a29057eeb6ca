package evatest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
)

// FreeAddr returns a loopback address ("127.0.0.1:port") that nothing
// listened on a moment ago, for a child that must be told its address
// before it starts (a cluster's routes, a callback URL handed to a
// simulator started first).
//
// Between this check and the child's listen the port is free for anyone
// to take. A port the kernel hands out itself — an outgoing connection's
// local port, another test's listen on port 0 — comes from its ephemeral
// range, and with many tests in parallel one did take such a port (CI,
// 4 December: "bind: address already in use"). So FreeAddr picks at
// random below that range, where only a listener asking for that very
// port can take it, and never twice in one process.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	lo, hi := belowEphemeral()
	for range 100 {
		port := lo + rand.IntN(hi-lo)
		if _, before := handedOut.LoadOrStore(port, true); before {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	tb.Fatalf("no free port in [%d, %d) after 100 tries", lo, hi)
	return ""
}

// handedOut holds the ports FreeAddr returned in this process.
var handedOut sync.Map

// belowEphemeral is the range FreeAddr picks from: from 20000 up to the
// kernel's ephemeral range (Linux's default starts at 32768). Where that
// range cannot be read, or starts too low, it is 20000–32768.
func belowEphemeral() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}

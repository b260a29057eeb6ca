package evatest

import (
	"net"
	"strconv"
	"testing"
)

// FreeAddr's addresses lie below the kernel's ephemeral range, are never
// the same twice, and can be listened on.
func TestFreeAddrPicksDistinctListenablePortsBelowTheEphemeralRange(t *testing.T) {
	lo, hi := belowEphemeral()
	seen := map[string]bool{}
	for range 50 {
		addr := FreeAddr(t)
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < lo || port >= hi {
			t.Fatalf("%s: port outside [%d, %d)", addr, lo, hi)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("listen on %s: %v", addr, err)
		}
		l.Close()
	}
}

// Package rpctest makes actor keys for tests of services served over rpc.
package rpctest

import (
	"testing"

	"github.com/eva-org/eva/pkg/rpc"
)

// Keys makes a fresh actor signing key: the signer a test's calls sign
// with (see rpc.ActingAsRequested) and the verifier its services trust.
func Keys(tb testing.TB) (*rpc.Signer, *rpc.Verifier) {
	tb.Helper()
	seed, public, err := rpc.NewActorKey()
	if err != nil {
		tb.Fatal(err)
	}
	s, err := rpc.NewSigner(seed)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := rpc.NewVerifier(public)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

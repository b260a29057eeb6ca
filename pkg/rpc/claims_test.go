package rpc

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"testing"
	"time"
)

func sampleClaims() Claims {
	return Claims{Principal: Principal{Username: "ana", Roles: []string{"requester", "approver"}, Posts: []string{"BGD-DHAKA"}},
		CommandID: "0190-c", Subject: "eva.intake.file", BodySHA256: sha256.Sum256([]byte("{}")),
		Expires: time.UnixMilli(1_800_000_000_123)}
}

// The encoding is canonical (list order does not matter) and decodes to
// what was encoded, lists sorted; anything else is refused.
func TestClaimsEncoding(t *testing.T) {
	c := sampleClaims()
	enc := c.encode()
	swapped := c
	swapped.Roles = []string{"approver", "requester"}
	if !bytes.Equal(enc, swapped.encode()) {
		t.Error("the encoding depends on the order of the roles")
	}
	got, err := decodeClaims(enc)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, swapped) || !got.Expires.Equal(c.Expires) {
		t.Errorf("decoded %+v, want %+v", got, swapped)
	}
	for name, bad := range map[string][]byte{
		"trailing byte":  append(append([]byte{}, enc...), 0),
		"truncated":      enc[:len(enc)-1],
		"no magic":       enc[1:],
		"empty":          nil,
		"unsorted roles": unsortedRoles(),
	} {
		if _, err := decodeClaims(bad); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// unsortedRoles is an encoding whose role list is out of order.
func unsortedRoles() []byte {
	c := sampleClaims()
	enc := c.encode()
	return bytes.Replace(enc, []byte("\x08approver\x09requester"), []byte("\x09requester\x08approver"), 1)
}

// decodeClaims never panics, and what it accepts encodes back to the same
// bytes.
func FuzzDecodeClaims(f *testing.F) {
	f.Add(sampleClaims().encode())
	f.Add([]byte(claimsMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeClaims(b)
		if err != nil {
			return
		}
		if !bytes.Equal(c.encode(), b) {
			t.Errorf("%x decodes to %+v, which encodes to %x", b, c, c.encode())
		}
	})
}

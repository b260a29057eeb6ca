package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eva-org/eva/pkg/evatest"
	"github.com/eva-org/eva/services/gateway/oidctest"
)

// TestE2EBrowserSSO signs in through single sign-on in chromium, scripts
// off, against eva dev and the fake OpenID provider: the sign-in page's
// "Sign in with SSO", the provider's redirect back (a cross-site
// navigation: EVA is opened as localhost, the provider is 127.0.0.1), and
// the approver's queue with the session the callback started. A user the
// provider gives no EVA role gets the 403 page and no session.
func TestE2EBrowserSSO(t *testing.T) {
	path := chromium(t)
	t.Parallel()
	p := oidctest.NewFakeProvider(t, "eva", "eva-secret")
	var base string
	startHTTPProc(t, "eva-sso", childEnv(), func(addr string) []string {
		_, port, _ := net.SplitHostPort(addr)
		base = "http://localhost:" + port
		return []string{"dev", "--data", t.TempDir(), "--http", addr, "--oidc-issuer", p.Issuer, "--oidc-client-id", "eva",
			"--oidc-client-secret", "eva-secret", "--oidc-redirect-url", base + "/login/sso/callback",
			"--oidc-role-map", "eva-approvers=approver"}
	}).waitOutput("EVA is running", 60*time.Second)
	browser := newBrowser(t, path)

	p.SignIn(map[string]any{"sub": "u-1", "preferred_username": "sso-kim", "groups": []string{"eva-approvers", "other"}})
	kim := newTab(t, browser, base, true)
	kim.open("/login")
	kim.click("a[href^='/v1/auth/oidc/login']")
	deadline := time.Now().Add(30 * time.Second)
	at := kim.url()
	for !strings.HasSuffix(at, "/queue") && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		at = kim.url()
		t.Logf("at %s", at)
	}
	if !strings.HasSuffix(at, "/queue") {
		t.Fatalf("after single sign-on the tab is at %s", at)
	}
	// The page came by a Refresh header: read it once it has loaded.
	evatest.Await(t, 30*time.Second, "the queue shown signed in", func() (bool, string) {
		html, err := kim.tryHTML()
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(html, "Sign out"), html
	})

	p.SignIn(map[string]any{"sub": "u-2", "preferred_username": "sso-lee", "groups": []string{"other"}})
	lee := newTab(t, browser, base, true)
	lee.open("/login")
	lee.click("a[href^='/v1/auth/oidc/login']")
	if html := lee.html(); !strings.Contains(html, "gives you no role in EVA") || !strings.Contains(lee.url(), "/login/sso/callback") {
		t.Fatalf("a user without a role: at %s: %s", lee.url(), html)
	}
	lee.open("/queue")
	if !strings.Contains(lee.url(), "/login") {
		t.Fatalf("a user without a role reached %s", lee.url())
	}
}

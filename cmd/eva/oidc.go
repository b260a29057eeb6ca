package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/eva-org/eva/services/gateway"
)

// oidcOptions are the flags of single sign-on (ADR 0023).
type oidcOptions struct {
	issuer, clientID, secret, secretFile, redirect string
	usernameClaim, rolesClaim, roleMap, postsClaim string
}

func oidcFlags(fs *flag.FlagSet) *oidcOptions {
	o := &oidcOptions{}
	fs.StringVar(&o.issuer, "oidc-issuer", os.Getenv("EVA_OIDC_ISSUER"),
		"single sign-on: the OpenID provider's issuer URL (default: off, local accounts only)")
	fs.StringVar(&o.clientID, "oidc-client-id", os.Getenv("EVA_OIDC_CLIENT_ID"), "single sign-on: EVA's client id at the provider")
	fs.StringVar(&o.secret, "oidc-client-secret", os.Getenv("EVA_OIDC_CLIENT_SECRET"), "single sign-on: the client secret")
	fs.StringVar(&o.secretFile, "oidc-client-secret-file", os.Getenv("EVA_OIDC_CLIENT_SECRET_FILE"),
		"single sign-on: a file holding the client secret (instead of --oidc-client-secret)")
	fs.StringVar(&o.redirect, "oidc-redirect-url", os.Getenv("EVA_OIDC_REDIRECT_URL"),
		"single sign-on: https://<host>/login/sso/callback, as registered at the provider")
	fs.StringVar(&o.usernameClaim, "oidc-username-claim", env("EVA_OIDC_USERNAME_CLAIM", gateway.DefaultOIDCUsernameClaim),
		"single sign-on: the ID token claim that is the EVA username")
	fs.StringVar(&o.rolesClaim, "oidc-roles-claim", env("EVA_OIDC_ROLES_CLAIM", gateway.DefaultOIDCRolesClaim),
		"single sign-on: the claim whose values --oidc-role-map maps to roles")
	fs.StringVar(&o.roleMap, "oidc-role-map", os.Getenv("EVA_OIDC_ROLE_MAP"),
		"single sign-on: group=role,group=role,... (an unmapped group gives no role)")
	fs.StringVar(&o.postsClaim, "oidc-posts-claim", os.Getenv("EVA_OIDC_POSTS_CLAIM"),
		"single sign-on: the claim that lists the user's posts (default: none)")
	return o
}

// config is the gateway's single sign-on, nil when --oidc-issuer is not
// set. Errors: a missing or contradictory setting.
func (o *oidcOptions) config() (*gateway.OIDCConfig, error) {
	if o == nil || o.issuer == "" {
		return nil, nil
	}
	secret := o.secret
	if o.secretFile != "" {
		if secret != "" {
			return nil, errors.New("oidc: give --oidc-client-secret or --oidc-client-secret-file, not both")
		}
		data, err := os.ReadFile(o.secretFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: %w", err)
		}
		secret = strings.TrimSpace(string(data))
	}
	switch {
	case o.clientID == "":
		return nil, errors.New("oidc: --oidc-client-id is required with --oidc-issuer")
	case o.redirect == "":
		return nil, errors.New("oidc: --oidc-redirect-url is required with --oidc-issuer")
	case o.roleMap == "":
		return nil, errors.New("oidc: --oidc-role-map is required with --oidc-issuer (no mapped group, no role)")
	}
	for _, u := range []string{o.issuer, o.redirect} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return nil, fmt.Errorf("oidc: %q is not an http(s) URL", u)
		}
	}
	roles, err := gateway.ParseRoleMap(o.roleMap)
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	return &gateway.OIDCConfig{Issuer: o.issuer, ClientID: o.clientID, ClientSecret: secret, RedirectURL: o.redirect,
		UsernameClaim: o.usernameClaim, RolesClaim: o.rolesClaim, RoleMap: roles, PostsClaim: o.postsClaim}, nil
}

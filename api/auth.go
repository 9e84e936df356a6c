package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Scope is a permission a token carries. A route requires exactly one scope
// and a token must list it; scopes do not imply one another, so an operator
// token cannot act as an agent and vice versa.
type Scope string

// Known scopes.
const (
	// ScopeOperator is for humans and CI using cyclerctl: deploys, rollbacks,
	// freezes, cluster changes.
	ScopeOperator Scope = "operator"
	// ScopeAgent is for cyclerd agents and LB daemons: registering, fetching
	// blobs, acknowledging generations.
	ScopeAgent Scope = "agent"
)

// MinSecretLen is the shortest token secret New accepts, in bytes. Shorter
// secrets are guessable; generate one with `openssl rand -hex 32`.
const MinSecretLen = 16

// Token is a named bearer token. The name is what the audit trail and the
// access log record; the secret is never logged.
type Token struct {
	// Name identifies the token holder, for example "ci" or "agent-web".
	Name string
	// Secret is the bearer value sent as "Authorization: Bearer <secret>".
	Secret string
	// Scopes lists what the token may do.
	Scopes []Scope
}

// hashedToken is a Token as the server keeps it: only the sha256 of the
// secret, so comparisons are fixed-length and the plain secret is not
// retained after New.
type hashedToken struct {
	name   string
	sum    [sha256.Size]byte
	scopes []Scope
}

func (t *hashedToken) has(scope Scope) bool {
	for _, s := range t.scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// authenticator matches presented secrets against the configured tokens.
type authenticator struct {
	tokens []hashedToken
}

// newAuthenticator validates tokens and hashes their secrets. It reports
// every problem at once.
func newAuthenticator(tokens []Token) (*authenticator, error) {
	if len(tokens) == 0 {
		return nil, errors.New("no API tokens configured: the API refuses to run " +
			"unauthenticated; add at least one token with the operator scope")
	}
	var errs []error
	names := make(map[string]bool, len(tokens))
	sums := make(map[[sha256.Size]byte]string, len(tokens))
	a := &authenticator{tokens: make([]hashedToken, 0, len(tokens))}
	for i, t := range tokens {
		label := fmt.Sprintf("token[%d] %q", i, t.Name)
		if t.Name == "" {
			errs = append(errs, fmt.Errorf("token[%d]: name is empty; give every token a name for the audit trail", i))
		} else if names[t.Name] {
			errs = append(errs, fmt.Errorf("%s: duplicate token name; names must be unique", label))
		}
		names[t.Name] = true
		if len(t.Secret) < MinSecretLen {
			errs = append(errs, fmt.Errorf("%s: secret is %d bytes, need at least %d (generate one with: openssl rand -hex 32)",
				label, len(t.Secret), MinSecretLen))
		}
		sum := sha256.Sum256([]byte(t.Secret))
		if other, dup := sums[sum]; dup && t.Secret != "" {
			errs = append(errs, fmt.Errorf("%s: same secret as token %q; every token needs its own secret", label, other))
		}
		sums[sum] = t.Name
		if len(t.Scopes) == 0 {
			errs = append(errs, fmt.Errorf("%s: no scopes; use %q and/or %q", label, ScopeOperator, ScopeAgent))
		}
		for _, s := range t.Scopes {
			if s != ScopeOperator && s != ScopeAgent {
				errs = append(errs, fmt.Errorf("%s: unknown scope %q; use %q or %q", label, s, ScopeOperator, ScopeAgent))
			}
		}
		a.tokens = append(a.tokens, hashedToken{
			name:   t.Name,
			sum:    sum,
			scopes: append([]Scope(nil), t.Scopes...),
		})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return a, nil
}

// lookup returns the token whose secret is secret, or nil.
//
// Why it is written this way: the presented secret is hashed so every
// comparison is over 32 bytes whatever the input length, and every configured
// token is compared with no early exit, selecting the match with
// subtle.ConstantTimeSelect. The time taken therefore reveals neither which
// token matched nor how many bytes of a guess were right.
func (a *authenticator) lookup(secret string) *hashedToken {
	sum := sha256.Sum256([]byte(secret))
	match := -1
	for i := range a.tokens {
		eq := subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:])
		match = subtle.ConstantTimeSelect(eq, i, match)
	}
	if match < 0 {
		return nil
	}
	return &a.tokens[match]
}

// authenticate checks r's bearer token for scope and returns the token name,
// or an *Error (401 or 403) and a WWW-Authenticate challenge to send.
func (a *authenticator) authenticate(r *http.Request, scope Scope) (string, *Error, string) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return "", Unauthorized("missing bearer token: send the header \"Authorization: Bearer <token>\" " +
			"(cyclerctl: set --token or CYCLER_TOKEN)"), `Bearer realm="cycler"`
	}
	// The scheme is case-insensitive (RFC 7235 section 2.1).
	scheme, secret, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(secret) == "" {
		return "", Unauthorized("malformed Authorization header: expected \"Bearer <token>\""),
			`Bearer realm="cycler", error="invalid_request"`
	}
	tok := a.lookup(strings.TrimSpace(secret))
	if tok == nil {
		return "", Unauthorized("invalid token: no configured token has this secret; check --token or CYCLER_TOKEN"),
			`Bearer realm="cycler", error="invalid_token"`
	}
	if !tok.has(scope) {
		return tok.name, Forbidden("token %q lacks the %q scope needed for %s %s",
			tok.name, scope, r.Method, r.URL.Path), ""
	}
	return tok.name, nil, ""
}

type tokenNameKey struct{}

// withTokenName returns ctx carrying the authenticated token's name.
func withTokenName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, tokenNameKey{}, name)
}

// TokenName returns the name of the token that authenticated the request
// whose context is ctx, or "" for public routes and unauthenticated contexts.
func TokenName(ctx context.Context) string {
	name, _ := ctx.Value(tokenNameKey{}).(string)
	return name
}

// Caller returns the name of the token that authenticated r, or "". It is
// the identity the audit trail records.
func Caller(r *http.Request) string {
	return TokenName(r.Context())
}

// BearerToken returns the secret r presented, or "". A server uses it to
// act on the caller's behalf toward another server, so that the audit trail
// names the caller rather than the relaying server.
func BearerToken(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const pfx = "Bearer "
	if len(h) > len(pfx) && strings.EqualFold(h[:len(pfx)], pfx) {
		return strings.TrimSpace(h[len(pfx):])
	}
	return ""
}

// Command gospiffe-workload drives Spinel's Workload API with go-spiffe
// (workloadapi.X509Source, JWTSource, Client) and prints what it got as one
// line of JSON, for the e2e interop tests. The agent is found through
// SPIFFE_ENDPOINT_SOCKET, as any go-spiffe workload finds it.
//
//	gospiffe-workload x509
//	gospiffe-workload jwt -audience AUD
//	gospiffe-workload validate -audience AUD -token TOKEN
//	gospiffe-workload bundles
//	gospiffe-workload wit
package main

import (
	"flag"
	"os"
	"sort"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"spinel.test/interop/go-spiffe/internal/out"
)

func main() {
	if len(os.Args) < 2 {
		out.Fail("usage: gospiffe-workload x509|jwt|validate|bundles|wit [flags]")
	}
	flags := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	audience := flags.String("audience", "", "JWT audience")
	token := flags.String("token", "", "JWT-SVID to validate")
	_ = flags.Parse(os.Args[2:])
	switch os.Args[1] {
	case "x509":
		x509()
	case "jwt":
		jwt(*audience)
	case "validate":
		validate(*token, *audience)
	case "bundles":
		bundles()
	case "wit":
		wit()
	default:
		out.Fail("unknown command %q", os.Args[1])
	}
}

// x509 opens an X509Source, takes its default SVID and verifies the chain
// against the source's own bundles, as a TLS peer would.
func x509() {
	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		out.Fail("X509Source: %v", err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		out.Fail("GetX509SVID: %v", err)
	}
	verified, _, err := x509svid.Verify(svid.Certificates, source)
	if err != nil {
		out.Fail("x509svid.Verify: %v", err)
	}
	x509ctx, err := workloadapi.FetchX509Context(ctx)
	if err != nil {
		out.Fail("FetchX509Context: %v", err)
	}
	ids := []string{}
	for _, s := range x509ctx.SVIDs {
		ids = append(ids, s.ID.String())
	}
	out.JSON(map[string]any{
		"spiffe_id":     svid.ID.String(),
		"verified_id":   verified.String(),
		"chain_len":     len(svid.Certificates),
		"hint":          svid.Hint,
		"svids":         ids,
		"trust_domains": x509TrustDomains(x509ctx),
	})
}

func x509TrustDomains(c *workloadapi.X509Context) []string {
	tds := []string{}
	for _, b := range c.Bundles.Bundles() {
		tds = append(tds, b.TrustDomain().String())
	}
	sort.Strings(tds)
	return tds
}

// jwt fetches a JWT-SVID through a JWTSource and validates it three ways:
// locally with the source's bundles, by the agent (ValidateJWTSVID), and
// by the agent with a wrong audience (which must fail).
func jwt(audience string) {
	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	source, err := workloadapi.NewJWTSource(ctx)
	if err != nil {
		out.Fail("JWTSource: %v", err)
	}
	defer source.Close()
	svid, err := source.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience})
	if err != nil {
		out.Fail("FetchJWTSVID: %v", err)
	}
	token := svid.Marshal()
	local, err := jwtsvid.ParseAndValidate(token, source, []string{audience})
	if err != nil {
		out.Fail("jwtsvid.ParseAndValidate: %v", err)
	}
	byAgent, err := workloadapi.ValidateJWTSVID(ctx, token, audience)
	if err != nil {
		out.Fail("ValidateJWTSVID: %v", err)
	}
	_, wrongErr := workloadapi.ValidateJWTSVID(ctx, token, audience+"-other")
	out.JSON(map[string]any{
		"spiffe_id":            svid.ID.String(),
		"audience":             svid.Audience,
		"token":                token,
		"local_valid_id":       local.ID.String(),
		"agent_valid_id":       byAgent.ID.String(),
		"agent_claims_sub":     byAgent.Claims["sub"],
		"wrong_audience_error": errString(wrongErr),
	})
}

// validate checks a token from elsewhere (e.g. another trust domain) both
// locally with a JWTSource and by the agent.
func validate(token, audience string) {
	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	source, err := workloadapi.NewJWTSource(ctx)
	if err != nil {
		out.Fail("JWTSource: %v", err)
	}
	defer source.Close()
	result := map[string]any{}
	if svid, err := jwtsvid.ParseAndValidate(token, source, []string{audience}); err != nil {
		result["local_error"] = err.Error()
	} else {
		result["local_valid_id"] = svid.ID.String()
	}
	if svid, err := workloadapi.ValidateJWTSVID(ctx, token, audience); err != nil {
		result["agent_error"] = err.Error()
	} else {
		result["agent_valid_id"] = svid.ID.String()
	}
	out.JSON(result)
}

// bundles lists the trust domains of the X.509 and JWT bundle sets.
func bundles() {
	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	x509Bundles, err := workloadapi.FetchX509Bundles(ctx)
	if err != nil {
		out.Fail("FetchX509Bundles: %v", err)
	}
	jwtBundles, err := workloadapi.FetchJWTBundles(ctx)
	if err != nil {
		out.Fail("FetchJWTBundles: %v", err)
	}
	x, j := []string{}, []string{}
	for _, b := range x509Bundles.Bundles() {
		x = append(x, b.TrustDomain().String())
	}
	for _, b := range jwtBundles.Bundles() {
		j = append(j, b.TrustDomain().String())
	}
	sort.Strings(x)
	sort.Strings(j)
	out.JSON(map[string]any{"x509": x, "jwt": j})
}

// wit asks for a WIT-SVID (go-spiffe's experimental WIT-SVID profile),
// which Spinel, like SPIRE 1.13, does not serve: the error is printed.
func wit() {
	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	_, err := workloadapi.FetchWITSVID(ctx, "")
	out.JSON(map[string]any{"error": errString(err)})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

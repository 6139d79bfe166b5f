// envoy-sds is an SDS client built on go-control-plane's generated Envoy
// API (the messages and gRPC client Envoy's own control planes use), for
// Spinel's end-to-end tests. It prints one line of JSON.
//
//	envoy-sds stream SOCKET READY_FILE PUSH_WAIT NAME...
//	    StreamSecrets with NAME...: the first response (ACKed), then
//	    READY_FILE is created and the stream waits up to PUSH_WAIT (a Go
//	    duration) for a pushed response with a new version (ACKed too).
//	    A stale ACK is sent in between; the agent must ignore it.
//	envoy-sds fetch SOCKET NAME...   FetchSecrets
//	envoy-sds delta SOCKET           DeltaSecrets (the gRPC status)
package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secret "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const secretType = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

func main() {
	out, err := run(os.Args[1:])
	if err != nil {
		out = map[string]any{"error": err.Error()}
	}
	line, _ := json.Marshal(out)
	fmt.Println(string(line))
}

func run(args []string) (map[string]any, error) {
	if len(args) < 2 {
		return nil, errors.New("usage: envoy-sds stream|fetch|delta SOCKET ...")
	}
	conn, err := grpc.NewClient("unix://"+args[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := secret.NewSecretDiscoveryServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	switch args[0] {
	case "stream":
		if len(args) < 4 {
			return nil, errors.New("stream SOCKET READY_FILE PUSH_WAIT NAME...")
		}
		wait, err := time.ParseDuration(args[3])
		if err != nil {
			return nil, err
		}
		return stream(ctx, client, args[2], wait, args[4:])
	case "fetch":
		resp, err := client.FetchSecrets(ctx, request(args[2:], "", ""))
		if err != nil {
			return map[string]any{"code": status.Code(err).String(), "message": status.Convert(err).Message()}, nil
		}
		return describe(resp)
	case "delta":
		s, err := client.DeltaSecrets(ctx)
		if err == nil {
			_, err = s.Recv()
		}
		return map[string]any{"code": status.Code(err).String()}, nil
	}
	return nil, fmt.Errorf("unknown command %q", args[0])
}

// request is what Envoy 1.40 sends: its node with a build version.
func request(names []string, version, nonce string) *discovery.DiscoveryRequest {
	return &discovery.DiscoveryRequest{
		VersionInfo:   version,
		ResponseNonce: nonce,
		ResourceNames: names,
		TypeUrl:       secretType,
		Node: &core.Node{
			Id:            "envoy-sds-test",
			Cluster:       "spinel",
			UserAgentName: "envoy",
			UserAgentVersionType: &core.Node_UserAgentBuildVersion{
				UserAgentBuildVersion: &core.BuildVersion{
					Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 40},
				},
			},
		},
	}
}

func stream(ctx context.Context, client secret.SecretDiscoveryServiceClient, ready string, wait time.Duration, names []string) (map[string]any, error) {
	s, err := client.StreamSecrets(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.Send(request(names, "", "")); err != nil {
		return nil, err
	}
	first, err := s.Recv()
	if err != nil {
		return map[string]any{"code": status.Code(err).String(), "message": status.Convert(err).Message()}, nil
	}
	firstOut, err := describe(first)
	if err != nil {
		return nil, err
	}
	// A stale nonce (ignored by the server), then the ACK.
	if err := s.Send(request(names, first.VersionInfo, "stale-"+first.Nonce)); err != nil {
		return nil, err
	}
	if err := s.Send(request(names, first.VersionInfo, first.Nonce)); err != nil {
		return nil, err
	}
	if err := os.WriteFile(ready, []byte("ready\n"), 0o600); err != nil {
		return nil, err
	}
	out := map[string]any{"first": firstOut}
	type result struct {
		resp *discovery.DiscoveryResponse
		err  error
	}
	got := make(chan result, 1)
	go func() {
		r, err := s.Recv()
		got <- result{r, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			out["push_error"] = status.Code(r.err).String() + ": " + status.Convert(r.err).Message()
			return out, nil
		}
		pushOut, err := describe(r.resp)
		if err != nil {
			return nil, err
		}
		out["push"] = pushOut
		if err := s.Send(request(names, r.resp.VersionInfo, r.resp.Nonce)); err != nil {
			return nil, err
		}
	case <-time.After(wait):
		out["push"] = nil
	}
	_ = s.CloseSend()
	return out, nil
}

// describe checks and summarizes a response's secrets.
func describe(resp *discovery.DiscoveryResponse) (map[string]any, error) {
	var resources []map[string]any
	for _, a := range resp.Resources {
		if a.TypeUrl != secretType {
			return nil, fmt.Errorf("resource of type %q", a.TypeUrl)
		}
		var sec tlsv3.Secret
		if err := a.UnmarshalTo(&sec); err != nil {
			return nil, err
		}
		r := map[string]any{"name": sec.Name}
		switch t := sec.Type.(type) {
		case *tlsv3.Secret_TlsCertificate:
			if err := certificate(t.TlsCertificate, r); err != nil {
				return nil, fmt.Errorf("%s: %w", sec.Name, err)
			}
		case *tlsv3.Secret_ValidationContext:
			if err := validation(t.ValidationContext, r); err != nil {
				return nil, fmt.Errorf("%s: %w", sec.Name, err)
			}
		default:
			return nil, fmt.Errorf("%s: unexpected secret type %T", sec.Name, t)
		}
		resources = append(resources, r)
	}
	return map[string]any{
		"version":   resp.VersionInfo,
		"nonce":     resp.Nonce,
		"type_url":  resp.TypeUrl,
		"resources": resources,
	}, nil
}

func certificate(c *tlsv3.TlsCertificate, r map[string]any) error {
	r["kind"] = "tls_certificate"
	certs, err := pemCerts(c.GetCertificateChain().GetInlineBytes())
	if err != nil {
		return err
	}
	block, _ := pem.Decode(c.GetPrivateKey().GetInlineBytes())
	if block == nil || block.Type != "PRIVATE KEY" {
		return errors.New("no PKCS#8 PEM private key")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return errors.New("the private key cannot sign")
	}
	leaf := certs[0]
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	r["key_matches"] = ok && pub.Equal(signer.Public())
	if len(leaf.URIs) != 1 {
		return fmt.Errorf("leaf has %d URI SANs", len(leaf.URIs))
	}
	r["spiffe_id"] = leaf.URIs[0].String()
	r["serial"] = leaf.SerialNumber.String()
	r["chain"] = len(certs)
	return nil
}

func validation(v *tlsv3.CertificateValidationContext, r map[string]any) error {
	if custom := v.GetCustomValidatorConfig(); custom != nil {
		r["kind"] = "spiffe_validator"
		r["validator"] = custom.Name
		var cfg tlsv3.SPIFFECertValidatorConfig
		if err := custom.TypedConfig.UnmarshalTo(&cfg); err != nil {
			return err
		}
		tds := map[string]int{}
		for _, td := range cfg.TrustDomains {
			certs, err := pemCerts(td.GetTrustBundle().GetInlineBytes())
			if err != nil {
				return fmt.Errorf("trust domain %s: %w", td.Name, err)
			}
			for _, c := range certs {
				if !c.IsCA {
					return fmt.Errorf("trust domain %s: a bundle certificate is not a CA", td.Name)
				}
			}
			tds[td.Name] = len(certs)
		}
		r["trust_domains"] = tds
		return nil
	}
	r["kind"] = "trusted_ca"
	certs, err := pemCerts(v.GetTrustedCa().GetInlineBytes())
	if err != nil {
		return err
	}
	r["certs"] = len(certs)
	return nil
}

func pemCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no certificates")
	}
	return out, nil
}

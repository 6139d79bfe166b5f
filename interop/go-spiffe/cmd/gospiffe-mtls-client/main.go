// Command gospiffe-mtls-client is the Go client of Spinel's mTLS example
// line protocol (examples/mtls): it dials with spiffetls, accepts only a
// server presenting -server-id, sends `ping 0.N` lines and prints
// `connected 0 to <server ID>` and one `reply <line>` per answer.
//
//	gospiffe-mtls-client -connect 127.0.0.1:8443 -server-id spiffe://example.org/server
package main

import (
	"bufio"
	"flag"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"spinel.test/interop/go-spiffe/internal/out"
)

func main() {
	connect := flag.String("connect", "", "server address")
	serverID := flag.String("server-id", "", "SPIFFE ID the server must present")
	pings := flag.Int("pings", 1, "pings to send")
	flag.Parse()
	id, err := spiffeid.FromString(*serverID)
	if err != nil {
		out.Fail("-server-id: %v", err)
	}

	ctx, cancel := out.Context(30 * time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		out.Fail("X509Source: %v", err)
	}
	defer source.Close()
	conn, err := spiffetls.DialWithMode(ctx, "tcp", *connect,
		spiffetls.MTLSClientWithSource(tlsconfig.AuthorizeID(id), source))
	if err != nil {
		out.Fail("dial: %v", err)
	}
	defer conn.Close()
	peer, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		out.Fail("peer ID: %v", err)
	}
	fmt.Printf("connected 0 to %s\n", peer)
	reader := bufio.NewReader(conn)
	for p := 0; p < *pings; p++ {
		if _, err := fmt.Fprintf(conn, "ping 0.%d\n", p); err != nil {
			out.Fail("write: %v", err)
		}
		line, err := reader.ReadString('\n')
		if err != nil {
			out.Fail("read: %v", err)
		}
		fmt.Printf("reply %s", line)
	}
}

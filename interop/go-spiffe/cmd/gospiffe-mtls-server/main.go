// Command gospiffe-mtls-server is the Go side of Spinel's mTLS example
// (examples/mtls speaks the same line protocol): it listens with
// spiffetls, requires a client X509-SVID whose SPIFFE ID is one of
// -allow, and answers each line `ping N` with
// `pong N from <its own SPIFFE ID> to <the client's>`.
//
//	gospiffe-mtls-server -listen 127.0.0.1:0 -allow spiffe://example.org/client
//
// It prints `<own ID> listening on <addr>` once ready, then one line per
// connection.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"spinel.test/interop/go-spiffe/internal/out"
)

type idList []spiffeid.ID

func (l *idList) String() string { return fmt.Sprint(*l) }

func (l *idList) Set(s string) error {
	id, err := spiffeid.FromString(s)
	if err != nil {
		return err
	}
	*l = append(*l, id)
	return nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	var allow idList
	flag.Var(&allow, "allow", "SPIFFE ID allowed to connect (repeat for more)")
	flag.Parse()
	if len(allow) == 0 {
		out.Fail("at least one -allow is required")
	}

	ctx := context.Background()
	startCtx, cancel := out.Context(30 * time.Second)
	source, err := workloadapi.NewX509Source(startCtx)
	cancel()
	if err != nil {
		out.Fail("X509Source: %v", err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		out.Fail("GetX509SVID: %v", err)
	}
	own := svid.ID.String()

	listener, err := spiffetls.ListenWithMode(ctx, "tcp", *listen,
		spiffetls.MTLSServerWithSource(tlsconfig.AuthorizeOneOf(allow...), source))
	if err != nil {
		out.Fail("listen: %v", err)
	}
	fmt.Printf("%s listening on %s\n", own, listener.Addr())
	for {
		conn, err := listener.Accept()
		if err != nil {
			out.Fail("accept: %v", err)
		}
		go serve(conn, own)
	}
}

func serve(conn net.Conn, own string) {
	defer conn.Close()
	// The handshake runs on the first read; the peer ID is known after it.
	reader := bufio.NewReader(conn)
	line, err := reader.ReadString('\n')
	if err != nil {
		fmt.Printf("refused %s: %v\n", conn.RemoteAddr(), err)
		return
	}
	peer, err := spiffetls.PeerIDFromConn(conn)
	if err != nil {
		fmt.Printf("refused %s: %v\n", conn.RemoteAddr(), err)
		return
	}
	fmt.Printf("accepted %s from %s\n", peer, conn.RemoteAddr())
	for {
		n, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "ping ")
		if !ok {
			return
		}
		if _, err := fmt.Fprintf(conn, "pong %s from %s to %s\n", n, own, peer); err != nil {
			return
		}
		if line, err = reader.ReadString('\n'); err != nil {
			return
		}
	}
}

// Command tinyclient is the smallest useful wsproof device program, for
// wsproof-bench's footprint figures: it reads its key and the pinned server
// key set, authenticates with client.Dial, sends one message, reads the
// echo, says "connected" and holds the socket open until its standard input
// closes.
//
//	tinyclient URL KEY.pem KEY-ID SERVER.pub.jwks IDENTITY
package main

import (
	"context"
	"io"
	"os"
	"time"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
)

func main() {
	if len(os.Args) != 6 {
		os.Stderr.WriteString("usage: tinyclient URL KEY.pem KEY-ID SERVER.pub.jwks IDENTITY\n")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]); err != nil {
		os.Stderr.WriteString("tinyclient: " + err.Error() + "\n")
		os.Exit(1)
	}
}

func run(url, keyFile, kid, setFile, identity string) error {
	pemKey, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	signer, err := keys.ParsePrivateKey(pemKey)
	if err != nil {
		return err
	}
	setData, err := os.ReadFile(setFile)
	if err != nil {
		return err
	}
	set, err := keys.ParsePublicSet(setData)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, url, &client.Config{KeyID: kid, Signer: signer, ServerKeys: set, ServerIdentity: identity})
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Write(ctx, []byte("reading 21.5")); err != nil {
		return err
	}
	if _, err := c.Read(ctx); err != nil {
		return err
	}
	os.Stdout.WriteString("connected\n")
	io.Copy(io.Discard, os.Stdin)
	return c.Close()
}

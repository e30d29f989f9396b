package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/wsproof/wsproof/client"
	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Example dials a wsproof server, sends one application message and reads
// the answer. The server here is a small echo server made with package
// protocol; a real deployment pins the server's published key set and uses
// a wss:// URL.
func Example() {
	_, clientKey, _ := ed25519.GenerateKey(nil) // in practice: a TPM, an HSM, ssh-agent
	url, serverKeys, stop := startEchoServer(clientKey.Public())
	defer stop()

	ctx := context.Background()
	c, err := client.Dial(ctx, url, &client.Config{
		KeyID:          "sensor-7",
		Signer:         clientKey,
		ServerKeys:     serverKeys,
		ServerIdentity: "wss://plant-3.example/ws",
	})
	if err != nil {
		fmt.Println("dial:", err)
		return
	}
	defer c.Close()

	s := c.Session()
	fmt.Println("authenticated as", s.Subject, s.Groups)

	if err := c.Write(ctx, []byte("temperature=21.5")); err != nil {
		fmt.Println("write:", err)
		return
	}
	reply, err := c.Read(ctx)
	if err != nil {
		fmt.Println("read:", err)
		return
	}
	fmt.Printf("server answered %q\n", reply)
	// Output:
	// authenticated as sensor-7@plant-3 [sensors]
	// server answered "temperature=21.5"
}

// startEchoServer runs a wsproof server that knows one client key and echoes
// binary messages. It returns the server's URL and public key set.
func startEchoServer(clientKey any) (url string, pinned *keys.PublicSet, stop func()) {
	_, signingKey, _ := ed25519.GenerateKey(nil)
	tokenKey := make([]byte, keys.TokenKeySize)
	rand.Read(tokenKey)
	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: keys.EdDSA, Signer: signingKey}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: tokenKey}},
	}
	registry, _ := keys.NewSet([]*keys.Entry{{
		KeyID: "sensor-7", Key: clientKey, Algorithm: keys.EdDSA, Subject: "sensor-7@plant-3", Groups: []string{"sensors"},
	}})
	server, _ := protocol.NewServer(&protocol.ServerConfig{Identity: "wss://plant-3.example/ws", Keys: sk, Registry: registry})

	up := websocket.Upgrader{Subprotocols: []string{protocol.Subprotocol}}
	var handlers sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		h, challenge, _ := server.Start(rand.Reader, time.Now(), nil)
		ws.WriteMessage(websocket.TextMessage, challenge)
		_, response, err := ws.ReadMessage()
		if err != nil {
			return
		}
		_, accept, err := h.ReadResponse(response, rand.Reader, time.Now())
		if err != nil {
			code := protocol.CodeOf(err)
			ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(code.CloseCode(), code.Reason()))
			return
		}
		ws.WriteMessage(websocket.TextMessage, accept)
		for {
			typ, msg, err := ws.ReadMessage()
			if err != nil || typ != websocket.BinaryMessage {
				return
			}
			ws.WriteMessage(websocket.BinaryMessage, msg)
		}
	}))
	return "ws" + strings.TrimPrefix(hs.URL, "http"), sk.Public(), func() { hs.Close(); handlers.Wait() }
}

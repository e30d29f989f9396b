package protocol_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/protocol"
)

// Example runs a whole handshake in memory: in a real deployment each message
// travels as one WebSocket text message.
func Example() {
	serverKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	clientKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))

	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: keys.EdDSA, Signer: serverKey}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: bytes.Repeat([]byte{3}, 32)}},
	}
	registry, _ := keys.NewSet([]*keys.Entry{{
		KeyID: "sensor-7", Key: clientKey.Public(), Algorithm: keys.EdDSA,
		Subject: "sensor-7@plant-3", Groups: []string{"sensors"},
	}})
	server, err := protocol.NewServer(&protocol.ServerConfig{
		Identity: "wss://plant-3.example/ws", Keys: sk, Registry: registry, RequiredGroups: []string{"sensors"},
	})
	if err != nil {
		panic(err)
	}
	client, err := protocol.NewClient(&protocol.ClientConfig{
		KeyID: "sensor-7", Signer: clientKey, ServerKeys: sk.Public(), ServerIdentity: "wss://plant-3.example/ws",
	})
	if err != nil {
		panic(err)
	}

	now := time.Now()
	sh, challenge, _ := server.Start(rand.Reader, now, nil) // server -> client
	ch := client.Handshake()
	response, err := ch.ReadChallenge(challenge, rand.Reader, now, nil) // client -> server
	if err != nil {
		panic(err)
	}
	session, accept, err := sh.ReadResponse(response, rand.Reader, now) // server -> client
	if err != nil {
		fmt.Println("refused:", protocol.CodeOf(err), protocol.CodeOf(err).CloseCode())
		return
	}
	cs, _ := ch.ReadAccept(accept, now)

	fmt.Println(session.Subject, session.Groups, session.ChannelBound)
	fmt.Println(cs.Token == session.Token)
	// Output:
	// sensor-7@plant-3 [sensors] false
	// true
}

// ExampleTokenVerifier_Open shows a backend checking that a frame handed to
// it came from an authenticated socket: it holds the token key and the
// server's public signing keys, not the server's private key.
func ExampleTokenVerifier_Open() {
	serverKey := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))
	sk := &keys.ServerKeys{
		Signing: []keys.SigningKey{{KeyID: "server-1", Algorithm: keys.EdDSA, Signer: serverKey}},
		Token:   []keys.TokenKey{{KeyID: "token-1", Algorithm: keys.TokenDir, Secret: bytes.Repeat([]byte{3}, 32)}},
	}
	backend, err := protocol.NewTokenVerifier("wss://plant-3.example/ws", sk.Token, sk.Public())
	if err != nil {
		panic(err)
	}

	_, err = backend.Open("not-a-token", "socket-id", time.Now())
	code := protocol.CodeOf(err)
	fmt.Println(code, code.CloseCode(), code.Retryable())
	// Output:
	// token_invalid 0 false
}

// ExampleCodeOf shows how a transport maps any handshake failure to the
// close frame the spec prescribes.
func ExampleCodeOf() {
	_, err := (&protocol.TokenVerifier{}).Open(string(make([]byte, protocol.MaxToken+1)), "", time.Now())
	code := protocol.CodeOf(err)
	fmt.Printf("close %d %q retry=%v\n", code.CloseCode(), code.Reason(), code.Retryable())
	// Output:
	// close 4002 "message too large" retry=false
}

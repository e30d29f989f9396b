package keys_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"log"

	"github.com/wsproof/wsproof/keys"
)

// A server reads its clients' OpenSSH public keys from an authorized_keys
// file and computes each key's RFC 7638 thumbprint, the recommended key id.
func ExampleParseAuthorizedKeys() {
	// The Ed25519 key of RFC 8037 appendix A, whose thumbprint is given in
	// appendix A.3.
	seed, _ := base64.RawURLEncoding.DecodeString("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A")
	pub := ed25519.NewKeyFromSeed(seed).Public()

	line, err := keys.MarshalAuthorizedKey(pub, "alice@example")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(line))

	file := append([]byte("# wsproof clients\nrestrict "), line...)
	authorized, err := keys.ParseAuthorizedKeys(file)
	if err != nil {
		log.Fatal(err)
	}
	for _, k := range authorized {
		kid, err := keys.Thumbprint(k.Key)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(k.Line, k.Comment, k.Options, keys.AlgorithmsFor(k.Key), kid)
	}
	// Output:
	// ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINdamAGCsQq31Uv+08lkBzoO4XLz2qYjJa8CGmj3B1Ea alice@example
	// 2 alice@example [restrict] [EdDSA] kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k
}

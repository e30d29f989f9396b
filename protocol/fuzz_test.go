package protocol

import (
	"testing"
	"time"

	"github.com/wsproof/wsproof/internal/vectorfile"
)

// Fuzz targets for every parser a peer can reach, seeded from the vectors.
// Run one for longer with, for example:
//
//	go test ./protocol -run '^$' -fuzz FuzzServerReadResponse -fuzztime 60s
//
// Besides not panicking, every failure must carry a code from the spec's
// error table.

// vectorSeeds adds field of every vector as a seed and fails if there is none.
func vectorSeeds(f *testing.F, env *vectorEnv, field func(vectorfile.Vector) string) {
	n := 0
	for _, v := range env.f.Vectors {
		if s := field(v); s != "" {
			f.Add([]byte(s))
			n++
		}
	}
	if n == 0 {
		f.Fatal("no seeds in the vectors")
	}
}

func checkFuzzError(t *testing.T, err error) {
	if err != nil && !CodeOf(err).Known() {
		t.Fatalf("error without a spec code: %v", err)
	}
}

func exchangeVector(f *testing.F, env *vectorEnv) vectorfile.Vector {
	for _, v := range env.f.Vectors {
		if v.Role == vectorfile.RoleExchange {
			return v
		}
	}
	f.Fatal("no exchange vector")
	return vectorfile.Vector{}
}

func FuzzServerReadResponse(f *testing.F) {
	env := loadVectors(f)
	vectorSeeds(f, env, func(v vectorfile.Vector) string { return v.Response })
	ex := exchangeVector(f, env)
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, err := env.srv.resume([]byte(ex.Challenge), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = h.ReadResponse(msg, vectorRand(), time.Unix(ex.Now, 0))
		checkFuzzError(t, err)
	})
}

func FuzzClientReadChallenge(f *testing.F) {
	env := loadVectors(f)
	vectorSeeds(f, env, func(v vectorfile.Vector) string { return v.Challenge })
	c, err := env.client("client-es256", false)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		_, err := c.Handshake().ReadChallenge(msg, vectorRand(), time.Unix(1767225600, 0), nil)
		checkFuzzError(t, err)
	})
}

func FuzzClientReadAccept(f *testing.F) {
	env := loadVectors(f)
	vectorSeeds(f, env, func(v vectorfile.Vector) string { return v.Accept })
	ex := exchangeVector(f, env)
	c, err := env.client(ex.Expected.ClientKID, false)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		h := c.Handshake()
		if _, err := h.ReadChallenge([]byte(ex.Challenge), vectorRand(), time.Unix(ex.Now, 0), nil); err != nil {
			t.Fatal(err)
		}
		_, err := h.ReadAccept(msg, time.Unix(ex.Now, 0))
		checkFuzzError(t, err)
	})
}

func FuzzOpenToken(f *testing.F) {
	env := loadVectors(f)
	vectorSeeds(f, env, func(v vectorfile.Vector) string { return v.Token })
	ex := exchangeVector(f, env)
	f.Fuzz(func(t *testing.T, token []byte) {
		c, err := env.srv.Tokens().Open(string(token), ex.Expected.SID, time.Unix(ex.Now, 0))
		checkFuzzError(t, err)
		if err == nil && c.SocketID != ex.Expected.SID {
			t.Fatal("token opened for another socket")
		}
	})
}

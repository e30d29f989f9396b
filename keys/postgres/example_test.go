package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/wsproof/wsproof/keys"
	"github.com/wsproof/wsproof/keys/postgres"
)

// A server keeps a Registry fresh with Run and rechecks its sessions on
// every OnChange.
func ExampleOpen() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var recheck func() // set to the server's Recheck once it exists
	reg, err := postgres.Open(ctx, &postgres.Config{
		URL:   "postgres://wsproof@db.example/wsproof",
		Grace: 2 * time.Minute,
		OnChange: func() {
			if recheck != nil {
				recheck()
			}
		},
	})
	if err != nil {
		log.Fatal(err) // errors.Is(err, postgres.ErrSchemaVersion): run "wsproof db migrate"
	}
	go reg.Run(ctx)
	// Pass reg as the server's keys.Registry; it is also a keys.Checker.
	var _ keys.Checker = reg
}

// The CLI enrolls, revokes, updates and removes keys through an Admin.
func ExampleAdmin() {
	ctx := context.Background()
	a, err := postgres.Connect(ctx, "postgres://wsproof-admin@db.example/wsproof")
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close(ctx)
	var e *keys.Entry // from "wsproof keys add" flags
	var dup *postgres.DuplicateError
	switch err := a.Add(ctx, e, "alice@example.com"); {
	case errors.As(err, &dup) && errors.Is(err, postgres.ErrDuplicateKey):
		fmt.Printf("this key is already enrolled as %s\n", dup.KeyID)
	case err != nil:
		log.Fatal(err)
	}
	if err := a.Revoke(ctx, "laptop-2019", "alice@example.com"); err != nil && !errors.Is(err, postgres.ErrAlreadyRevoked) {
		log.Fatal(err)
	}
	// A wrong enrollment is fixed in place: the change is made to the entry
	// as it is in the database, checked by the registry rules, in one
	// transaction.
	if err := a.Update(ctx, "laptop-2024", "alice@example.com", func(e *keys.Entry) error {
		e.Groups = append(e.Groups, "telemetry")
		return nil
	}); err != nil {
		log.Fatal(err) // errors.Is(err, postgres.ErrNotFound): no such key id
	}
	if err := a.Remove(ctx, "test-key", "alice@example.com"); err != nil && !errors.Is(err, postgres.ErrNotFound) {
		log.Fatal(err)
	}
}

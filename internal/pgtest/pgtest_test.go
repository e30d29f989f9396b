package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartStopRestart(t *testing.T) {
	c := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	query := func(url string) (string, error) {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return "", err
		}
		defer conn.Close(ctx)
		var db string
		err = conn.QueryRow(ctx, "SELECT current_database()").Scan(&db)
		return db, err
	}
	if db, err := query(c.URL()); err != nil || db != "test" {
		t.Fatalf("URL: database %q, %v; want test", db, err)
	}
	other := c.NewDatabase(t)
	if db, err := query(other); err != nil || db == "test" {
		t.Fatalf("NewDatabase: database %q, %v; want a new one", db, err)
	}

	// Data written before Stop survives Restart; nothing answers between.
	conn, err := pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	c.Stop(t)
	if _, err := query(c.URL()); err == nil {
		t.Fatal("the stopped cluster still answers")
	}
	c.Restart(t)
	conn, err = pgx.Connect(ctx, c.URL())
	if err != nil {
		t.Fatalf("after Restart: %v", err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Fatalf("after Restart: x = %d, %v; want 42", x, err)
	}
}

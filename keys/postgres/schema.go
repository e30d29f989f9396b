package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrSchemaVersion is wrapped by the error Open and the Admin methods return
// when the database schema is not the one this package was written for: the
// operator runs "wsproof db migrate" (Admin.Migrate) for an older one, and
// upgrades wsproof for a newer one.
var ErrSchemaVersion = errors.New("postgres: database schema version mismatch")

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the files of migrations/, named NNNN_what.sql, in version
// order. Versions start at 1 and have no gaps, which a test checks.
var migrations = loadMigrations()

// schemaVersion is the version of the schema this package reads and writes.
var schemaVersion = migrations[len(migrations)-1].version

func loadMigrations() []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil || len(names) == 0 {
		panic("postgres: no embedded migrations")
	}
	var out []migration
	for _, name := range names { // fs.Glob sorts, and versions are zero-padded
		base := strings.TrimPrefix(name, "migrations/")
		prefix, _, _ := strings.Cut(base, "_")
		v, err := strconv.Atoi(prefix)
		if err != nil {
			panic("postgres: migration file without a version: " + name)
		}
		data, err := migrationFiles.ReadFile(name)
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: base, sql: string(data)})
	}
	return out
}

// migrateLock is the pg_advisory_xact_lock key that serializes migrations,
// so that two nodes migrating at once apply each migration once. It spells
// "wsproof" and a 1.
const migrateLock int64 = 0x77737072_6f6f6601

const createSchemaTable = `CREATE TABLE IF NOT EXISTS wsproof_schema (
    version    int PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

// migrate applies the pending migrations in order, each in its own
// transaction under migrateLock, and returns the versions it applied.
func migrate(ctx context.Context, conn *pgx.Conn) ([]int, error) {
	var applied []int
	for _, m := range migrations {
		did := false
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLock); err != nil {
				return err
			}
			// Creating the version table under the lock keeps two first
			// migrations from racing on CREATE TABLE IF NOT EXISTS.
			if _, err := tx.Exec(ctx, createSchemaTable); err != nil {
				return err
			}
			var v int
			if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM wsproof_schema").Scan(&v); err != nil {
				return err
			}
			switch {
			case v > schemaVersion:
				return newerSchema(v)
			case v >= m.version:
				return nil
			}
			// No arguments: pgx sends the file with the simple query
			// protocol, which allows several statements.
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO wsproof_schema (version) VALUES ($1)", m.version); err != nil {
				return err
			}
			did = true
			return nil
		})
		if err != nil {
			if errors.Is(err, ErrSchemaVersion) {
				return applied, err
			}
			return applied, fmt.Errorf("postgres: migrate: %w", err)
		}
		if did {
			applied = append(applied, m.version)
		}
	}
	return applied, nil
}

func newerSchema(v int) error {
	return fmt.Errorf("%w: the database has schema version %d, newer than this wsproof's %d: upgrade wsproof", ErrSchemaVersion, v, schemaVersion)
}

// querier is what checkSchema needs of a connection or transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// checkSchema fails, wrapping ErrSchemaVersion, unless the database has
// exactly the schema this package was written for.
func checkSchema(ctx context.Context, q querier) error {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regclass('wsproof_schema') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("postgres: schema version: %w", err)
	}
	v := 0
	if exists {
		if err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM wsproof_schema").Scan(&v); err != nil {
			return fmt.Errorf("postgres: schema version: %w", err)
		}
	}
	switch {
	case v == 0:
		return fmt.Errorf("%w: the database has no wsproof schema: run \"wsproof db migrate\"", ErrSchemaVersion)
	case v < schemaVersion:
		return fmt.Errorf("%w: the database has schema version %d, this wsproof needs %d: run \"wsproof db migrate\"", ErrSchemaVersion, v, schemaVersion)
	case v > schemaVersion:
		return newerSchema(v)
	}
	return nil
}

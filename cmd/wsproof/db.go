package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/wsproof/wsproof/keys/postgres"
)

const dbUsage = `Usage: wsproof db COMMAND [--db URL]

Manages the PostgreSQL key registry of fleet mode ("wsproof serve --db").

Commands:
    migrate            create or upgrade the schema; safe to run again, and from
                       several nodes at once
    audit [--limit N]  print the latest changes to the registry (default 50), newest
                       first: who (the actor the command named, $USER for "wsproof
                       keys", and the database role), what, and which key

Flags:
    --db URL    the database, as a postgres:// URL or a libpq key=value string
                (default $WSPROOF_DATABASE_URL)

Enroll, list, update, revoke and remove keys with "wsproof keys ... --db URL".
`

func (c *cli) db(ctx context.Context, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, dbUsage)
		return errUsage
	}
	sub := args[0]
	switch sub {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(c.stdout, dbUsage)
		return nil
	case "migrate", "audit":
	default:
		return c.unknownSub("db", sub, dbUsage)
	}
	fs := c.newFlags("db "+sub, dbUsage)
	dbURL := fs.String("db", "", "")
	limit := fs.Int("limit", 50, "")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return c.usageErr(fs, "db %s takes no arguments, got %q", sub, pos[0])
	}
	if *limit < 1 {
		return c.usageErr(fs, "--limit must be at least 1")
	}
	a, err := c.dbAdmin(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer a.Close(context.Background())
	switch sub {
	case "migrate":
		applied, err := a.Migrate(ctx)
		if err != nil {
			return &userError{"cannot migrate the registry database", "", err}
		}
		if len(applied) == 0 {
			fmt.Fprintln(c.stdout, "the schema is up to date")
			return nil
		}
		for _, v := range applied {
			fmt.Fprintf(c.stdout, "applied migration %d\n", v)
		}
		return nil
	default:
		recs, err := a.Audit(ctx, *limit)
		if err != nil {
			return &userError{"cannot read the audit log", "", err}
		}
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tAT\tACTOR\tROLE\tACTION\tKID")
		for _, r := range recs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", strconv.FormatInt(r.ID, 10), r.At.UTC().Format(time.RFC3339),
				printable(r.Actor), printable(r.Role), r.Action, printable(r.KeyID))
		}
		return tw.Flush()
	}
}

// dbAdmin connects to the registry database named by flagValue, else
// $WSPROOF_DATABASE_URL.
func (c *cli) dbAdmin(ctx context.Context, flagValue string) (*postgres.Admin, error) {
	url := flagValue
	if url == "" {
		url = c.getenv("WSPROOF_DATABASE_URL")
	}
	if url == "" {
		return nil, &userError{"no database given", "pass --db URL or set $WSPROOF_DATABASE_URL", nil}
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	a, err := postgres.Connect(cctx, url)
	if err != nil {
		return nil, &userError{fmt.Sprintf("cannot connect to %s", redactURL(url)), "check --db and that the database is reachable", err}
	}
	return a, nil
}

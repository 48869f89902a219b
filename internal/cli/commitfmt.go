package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"vers/api"
)

// shortCommit is a commit id as text shows it: 12 hex digits, as git
// shortens. JSON always has the whole id.
func shortCommit(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// formatBytes is n in binary units: "512 B", "3.4 KiB", "84 MiB", "1.2 GiB".
func formatBytes(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v, i := float64(n)/1024, 0
	for v >= 1023.95 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v >= 9.95 {
		return fmt.Sprintf("%.0f %s", v, units[i])
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}

// formatAge is how long before now t was: "12s ago", "5m ago", "3h ago",
// "2d ago".
func formatAge(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

var daysRE = regexp.MustCompile(`^(\d+)d(.*)$`)

// parseAge reads a duration as Go writes them (36h, 90m, 1h30m) or with
// whole days first (7d, 1d12h).
func parseAge(s string) (time.Duration, error) {
	bad := fmt.Errorf("%q is not a duration: write it like 7d, 36h, 90m or 1d12h: %w", s, errUsage)
	if s == "" {
		return 0, bad
	}
	var days time.Duration
	rest := s
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 32)
		if err != nil {
			return 0, bad
		}
		days, rest = time.Duration(n)*24*time.Hour, m[2]
	}
	if rest == "" {
		return days, nil
	}
	d, err := time.ParseDuration(rest)
	if err != nil || (days > 0 && strings.HasPrefix(rest, "-")) {
		return 0, bad
	}
	return days + d, nil
}

// commitSource is the VM a commit was made of: its alias, or its short id.
func commitSource(c api.Commit) string {
	switch {
	case c.SourceAlias != "":
		return c.SourceAlias
	case c.SourceVM != "":
		return shortID(c.SourceVM)
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// commitTable prints commits, one a line, in the order given: `vers commit
// ls` and `vers commit history`.
func commitTable(w io.Writer, commits []api.Commit, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTAGS\tSOURCE\tPARENT\tCREATED\tSIZE\tADDED")
	for _, c := range commits {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", shortCommit(c.ID), orDash(strings.Join(c.Tags, ",")),
			commitSource(c), orDash(shortCommit(c.Parent)), formatAge(now, c.CreatedAt),
			formatBytes(c.LogicalBytes), formatBytes(c.AddedBytes))
	}
	return tw.Flush()
}

// commitName is a commit for a sentence: its short id, and its tags.
func commitName(c api.Commit) string {
	switch len(c.Tags) {
	case 0:
		return shortCommit(c.ID)
	case 1:
		return fmt.Sprintf("%s (tag %s)", shortCommit(c.ID), c.Tags[0])
	}
	return fmt.Sprintf("%s (tags %s)", shortCommit(c.ID), strings.Join(c.Tags, ", "))
}

// printIDs prints one id a line: the -q of the listing commands.
func printIDs(w io.Writer, ids []string) {
	for _, id := range ids {
		fmt.Fprintln(w, id)
	}
}

// withSignals ends ctx on Ctrl-C, SIGTERM or SIGHUP, so that a long
// request ends cleanly (versd sees its client go) instead of vers dying in
// the middle of it.
func withSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}

// stopped says that a signal ended what was under way.
func stopped(ctx context.Context, what string, err error) error {
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%s interrupted: %w", what, errCancelled)
	}
	return err
}

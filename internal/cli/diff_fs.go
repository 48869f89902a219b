package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"vers/api"
)

// runFS is `vers diff A B [PATH...]`: versd compares the two filesystems.
func (o *DiffOptions) runFS(ctx context.Context, c Daemon) error {
	d, err := c.Diff(ctx, api.FSDiffRequest{A: o.A, B: o.B, Paths: o.Paths,
		Include: o.Include, Exclude: o.Exclude, Checksum: o.Checksum, Content: o.Content, ContentMax: o.ContentMax})
	if err != nil {
		return err
	}
	if o.Format == "json" {
		err = json.NewEncoder(o.f.Out).Encode(d)
	} else {
		writeFSDiff(o.f.Out, d, o.Stat)
	}
	if err == nil && len(d.Changes) > 0 {
		return &ExitErr{Code: ExitError}
	}
	return err
}

// writeFSDiff prints one line per change, the differences vers makes itself
// apart, and the counts.
func writeFSDiff(w io.Writer, d api.FSDiff, statOnly bool) {
	if !statOnly {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, ch := range d.Changes {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", changeLetter(ch), ch.Path, changeDetail(ch))
		}
		tw.Flush()
		for _, fd := range d.Content {
			switch {
			case fd.Binary:
				fmt.Fprintf(w, "Binary file %s differs\n", fd.Path)
			default:
				io.WriteString(w, fd.Diff)
			}
			if fd.Truncated {
				fmt.Fprintf(w, "(%s: only the first bytes were compared; --content-max raises the cap)\n", fd.Path)
			}
		}
		for _, ch := range d.Expected {
			fmt.Fprintf(w, "(not counted) %s differs: %s\n", ch.Path, ch.Note)
		}
		for _, e := range d.Errors {
			fmt.Fprintf(w, "(not compared) %s\n", e)
		}
	}
	took := (time.Duration(d.DurationMillis) * time.Millisecond).Round(10 * time.Millisecond)
	how := fmt.Sprintf("%d and %d entries under %s", d.Stat.EntriesA, d.Stat.EntriesB, strings.Join(d.Paths, " "))
	if d.Method == api.DiffJournal {
		how = fmt.Sprintf("%d and %d entries changed since they parted, under %s", d.Stat.EntriesA, d.Stat.EntriesB, strings.Join(d.Paths, " "))
	}
	fmt.Fprintf(w, "%s and %s: %d added, %d removed, %d changed (%s; %s)\n",
		refLabel(d.A), refLabel(d.B), d.Stat.Added, d.Stat.Removed, d.Stat.Changed, how, took)
}

func changeLetter(ch api.FSChange) string {
	switch ch.Kind {
	case api.ChangeAdded:
		return "A"
	case api.ChangeRemoved:
		return "D"
	}
	return "M"
}

// changeDetail says what an entry is (added, removed) or how it changed.
func changeDetail(ch api.FSChange) string {
	switch ch.Kind {
	case api.ChangeAdded:
		return entryText(ch.B)
	case api.ChangeRemoved:
		return entryText(ch.A)
	}
	var parts []string
	for _, what := range ch.What {
		a, b := ch.A, ch.B
		switch what {
		case "type":
			parts = append(parts, "type "+a.Type+" → "+b.Type)
		case "mode":
			parts = append(parts, "mode "+a.Mode+" → "+b.Mode)
		case "owner":
			parts = append(parts, fmt.Sprintf("owner %d:%d → %d:%d", a.UID, a.GID, b.UID, b.GID))
		case "target":
			parts = append(parts, "target "+a.Target+" → "+b.Target)
		case "content":
			parts = append(parts, fmt.Sprintf("content (%d → %d bytes)", a.Size, b.Size))
		}
	}
	return strings.Join(parts, ", ")
}

func entryText(e *api.FSEntry) string {
	if e == nil {
		return ""
	}
	switch e.Type {
	case "file":
		return fmt.Sprintf("file %s, %d bytes", e.Mode, e.Size)
	case "symlink":
		return "symlink → " + e.Target
	}
	return e.Type + " " + e.Mode
}

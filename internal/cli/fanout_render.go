package cli

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"vers/api"
)

// summaryWidth is how much of a row's first line the table shows.
const summaryWidth = 60

// writeFanTable prints one line per VM: its exit code, how long the command
// took and what it printed — its first line, or "= VM" when it printed
// exactly what an earlier VM did. With full, the column holds the group's
// number and every distinct output follows the table once, under the VMs
// that printed it.
func writeFanTable(w io.Writer, res api.FanoutResult, full bool) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VM\tEXIT\tTIME\tOUTPUT")
	first := map[int]api.VMRef{}
	for _, r := range res.Results {
		out := ""
		switch prev, seen := first[r.Group]; {
		case full:
			out = fmt.Sprintf("[%d]", r.Group)
		case seen:
			out = "= " + refLabel(prev)
		default:
			out = rowSummary(r)
		}
		if _, seen := first[r.Group]; !seen {
			first[r.Group] = r.VM
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", refLabel(r.VM), exitText(r), durationText(r), out)
	}
	tw.Flush()
	if full {
		for i, g := range res.Groups {
			fmt.Fprintln(w)
			writeGroup(w, i+1, g, res.Results, "")
		}
	}
}

// writeComparison prints the VMs grouped by identical result, the largest
// group first: which VMs agree, and what each group printed.
func writeComparison(w io.Writer, res api.FanoutResult) {
	n := len(res.Groups)
	fmt.Fprintf(w, "%s, %s\n", plural(len(res.Results), "VM"), plural(n, "result"))
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return len(res.Groups[b].VMs) - len(res.Groups[a].VMs) })
	for _, i := range order {
		writeGroup(w, i+1, res.Groups[i], res.Results, "    ")
	}
}

// writeGroup prints a group's header and the output its VMs share.
func writeGroup(w io.Writer, n int, g api.FanoutGroup, rows []api.FanoutRow, indent string) {
	var r api.FanoutRow
	for _, row := range rows {
		if row.Group == n {
			r = row
			break
		}
	}
	names := make([]string, len(g.VMs))
	for i, v := range g.VMs {
		names[i] = refLabel(v)
	}
	what := "exit " + exitText(r)
	if r.Error != nil {
		what = "not run"
	}
	fmt.Fprintf(w, "[%d] %s, %s: %s\n", n, plural(len(g.VMs), "VM"), what, strings.Join(names, ", "))
	if r.Error != nil {
		fmt.Fprintf(w, "%svers: %s: %s\n", indent, r.Error.Code, r.Error.Message)
		return
	}
	writeIndented(w, indent, r.Stdout)
	if r.Stderr != "" {
		fmt.Fprintf(w, "%sstderr:\n", indent)
		writeIndented(w, indent+"  ", r.Stderr)
	}
	if r.Stdout == "" && r.Stderr == "" {
		fmt.Fprintf(w, "%s(no output)\n", indent)
	}
	if r.DroppedBytes > 0 {
		fmt.Fprintf(w, "%s(%d more bytes of output were not kept; --max-output raises the cap)\n", indent, r.DroppedBytes)
	}
}

func writeIndented(w io.Writer, indent, text string) {
	if text == "" {
		return
	}
	for _, line := range strings.SplitAfter(strings.TrimSuffix(text, "\n"), "\n") {
		fmt.Fprintf(w, "%s%s\n", indent, strings.TrimSuffix(line, "\n"))
	}
}

// rowSummary is the first line of what a row printed (stdout, else stderr),
// its runs of spaces made one, cut to summaryWidth, and how many lines
// follow it.
func rowSummary(r api.FanoutRow) string {
	if r.Error != nil {
		return "vers: " + r.Error.Code + ": " + r.Error.Message
	}
	text, prefix := r.Stdout, ""
	if strings.TrimSpace(text) == "" {
		text, prefix = r.Stderr, "stderr: "
	}
	text = strings.TrimRight(text, "\n")
	if strings.TrimSpace(text) == "" {
		return "(no output)"
	}
	lines := strings.Split(text, "\n")
	line := strings.Join(strings.Fields(lines[0]), " ") // columns padded with spaces read as one line
	if utf8.RuneCountInString(line) > summaryWidth {
		line = string([]rune(line)[:summaryWidth-1]) + "…"
	}
	if len(lines) > 1 {
		line += fmt.Sprintf("  (+%d lines)", len(lines)-1)
	}
	return prefix + line
}

func exitText(r api.FanoutRow) string {
	switch {
	case r.Error != nil:
		return "-"
	case r.TimedOut:
		return fmt.Sprintf("%d (timed out)", r.ExitCode)
	}
	return fmt.Sprint(r.ExitCode)
}

func durationText(r api.FanoutRow) string {
	if r.Error != nil && r.DurationMillis == 0 {
		return "-"
	}
	d := time.Duration(r.DurationMillis) * time.Millisecond
	if d < time.Second {
		return d.String()
	}
	return d.Round(10 * time.Millisecond).String()
}

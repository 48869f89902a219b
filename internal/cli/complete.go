package cli

import (
	"context"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// completionTimeout bounds what a shell completion asks of versd: a Tab
// must never hang, even on a daemon that does not answer.
const completionTimeout = time.Second

// lister gives the completions of one kind (VMs, commits, tags) that start
// with prefix. It asks a versd that runs, and gives nothing when none does.
type lister func(ctx context.Context, d Daemon, prefix string) []cobra.Completion

// completeArgs completes the positional argument i with byPos[i]'s kinds;
// with rest, arguments past the last position take the last one's.
func completeArgs(f *Factory, rest bool, byPos ...[]lister) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		i := len(args)
		if i >= len(byPos) {
			if !rest || len(byPos) == 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			i = len(byPos) - 1
		}
		return f.complete(cmd.Context(), toComplete, byPos[i]...), cobra.ShellCompDirectiveNoFileComp
	}
}

// complete runs listers against a running versd, never starting one, and
// quietly gives nothing when none answers in time.
func (f *Factory) complete(ctx context.Context, prefix string, kinds ...lister) []cobra.Completion {
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, completionTimeout)
	defer cancel()
	d, err := f.runningClient()
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, l := range kinds {
		out = append(out, l(ctx, d, prefix)...)
	}
	return out
}

// vmCompletions are the VMs' aliases, and the ids of those without one (or
// all ids, once prefix is the start of one).
func vmCompletions(ctx context.Context, d Daemon, prefix string) []cobra.Completion {
	vms, err := d.ListVMs(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, v := range vms {
		if v.Alias != "" && strings.HasPrefix(v.Alias, prefix) {
			out = append(out, cobra.CompletionWithDesc(v.Alias, "VM "+shortID(v.ID)+", "+v.State))
		}
		if strings.HasPrefix(v.ID, prefix) && (v.Alias == "" || prefix != "") {
			out = append(out, cobra.CompletionWithDesc(v.ID, "VM "+aliasOrNone(v)+", "+v.State))
		}
	}
	return out
}

// commitCompletions are the tags, and the commits' ids: short (as vers
// shows them) until prefix is longer.
func commitCompletions(ctx context.Context, d Daemon, prefix string) []cobra.Completion {
	out := tagCompletions(ctx, d, prefix)
	commits, err := d.ListCommits(ctx)
	if err != nil {
		return out
	}
	for _, c := range commits {
		if !strings.HasPrefix(c.ID, prefix) {
			continue
		}
		id := shortCommit(c.ID)
		if len(prefix) >= len(id) {
			id = c.ID
		}
		desc := "commit of " + c.SourceAlias
		if c.SourceAlias == "" {
			desc = "commit of " + shortID(c.SourceVM)
		}
		if c.Message != "" {
			desc += ": " + c.Message
		}
		out = append(out, cobra.CompletionWithDesc(id, desc))
	}
	return out
}

func tagCompletions(ctx context.Context, d Daemon, prefix string) []cobra.Completion {
	tags, err := d.ListTags(ctx)
	if err != nil {
		return nil
	}
	var out []cobra.Completion
	for _, t := range tags {
		if strings.HasPrefix(t.Name, prefix) {
			out = append(out, cobra.CompletionWithDesc(t.Name, "tag of "+shortCommit(t.Commit)))
		}
	}
	return out
}

// completeLeading completes the VM of a command whose flags cobra does not
// parse (execute): the first word that is no flag nor a flag's value.
func completeLeading(f *Factory, fl *pflag.FlagSet) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if strings.HasPrefix(toComplete, "-") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		for i := 0; i < len(args); i++ {
			a := args[i]
			if a == "--" || !strings.HasPrefix(a, "-") {
				return nil, cobra.ShellCompDirectiveNoFileComp // the VM or the command came
			}
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			var flag *pflag.Flag
			if strings.HasPrefix(a, "--") {
				flag = fl.Lookup(name)
			} else if len(name) == 1 {
				flag = fl.ShorthandLookup(name)
			}
			if flag != nil && flag.NoOptDefVal == "" {
				i++ // its value
			}
		}
		return f.complete(cmd.Context(), toComplete, vmCompletions), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeCopy completes cp's arguments: "VM:" for the VMs whose names
// start with what was typed, host files otherwise. A path inside a VM is
// not completed.
func completeCopy(f *Factory) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) >= 2 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if strings.Contains(toComplete, ":") {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		if toComplete == "" || strings.ContainsAny(toComplete, "/.~") {
			return nil, cobra.ShellCompDirectiveDefault
		}
		var out []cobra.Completion
		for _, c := range f.complete(cmd.Context(), toComplete, vmCompletions) {
			name, desc, _ := strings.Cut(c, "\t")
			out = append(out, cobra.CompletionWithDesc(name+":", desc))
		}
		if len(out) == 0 {
			return nil, cobra.ShellCompDirectiveDefault
		}
		return out, cobra.ShellCompDirectiveNoSpace | cobra.ShellCompDirectiveNoFileComp
	}
}

// Kinds of argument, for completeArgs.
var (
	vmArgs       = []lister{vmCompletions}
	commitArgs   = []lister{commitCompletions}
	tagArgs      = []lister{tagCompletions}
	vmCommitArgs = []lister{vmCompletions, commitCompletions}
)

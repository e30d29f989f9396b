package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

const completionUsage = `Usage: wsproof completion bash|zsh|fish

Prints a shell completion script for commands, subcommands, flags, and the
key ids of "wsproof keys show|update|revoke|remove" (read from the registry
the command would open, as its flags and environment say):

    bash   source <(wsproof completion bash)            (in ~/.bashrc)
    zsh    source <(wsproof completion zsh)             (in ~/.zshrc, after compinit)
    fish   wsproof completion fish > ~/.config/fish/completions/wsproof.fish

The scripts ask the wsproof on PATH what to complete, so they stay current
when wsproof is upgraded. Where no command or flag fits, they complete file
names.
`

// completeCmd is the hidden command the completion scripts run: "wsproof
// __complete WORD... CURRENT" prints the candidates for CURRENT, the word
// being completed, after WORDs, one per line.
const completeCmd = "__complete"

// completionScripts are the scripts "wsproof completion" prints. Each hands
// the words before the cursor and the word at it to "wsproof __complete",
// and falls back to file names when it prints nothing.
var completionScripts = map[string]string{
	"bash": `# bash completion for wsproof: source <(wsproof completion bash)
_wsproof() {
	local IFS=$'\n'
	COMPREPLY=($(wsproof ` + completeCmd + ` "${COMP_WORDS[@]:1:COMP_CWORD-1}" "${COMP_WORDS[COMP_CWORD]}" 2>/dev/null))
}
complete -o default -F _wsproof wsproof
`,
	"zsh": `#compdef wsproof
# zsh completion for wsproof: source <(wsproof completion zsh), after compinit
_wsproof() {
	local -a cands
	cands=("${(@f)$(wsproof ` + completeCmd + ` "${(@)words[2,CURRENT-1]}" "${words[CURRENT]}" 2>/dev/null)}")
	cands=(${cands:#})
	if (( ${#cands} )); then
		compadd -- "${cands[@]}"
	else
		_files
	fi
}
compdef _wsproof wsproof
`,
	"fish": `# fish completion for wsproof: wsproof completion fish > ~/.config/fish/completions/wsproof.fish
function __wsproof_complete
	set -l out (wsproof ` + completeCmd + ` (commandline -opc)[2..-1] (commandline -ct) 2>/dev/null)
	if test (count $out) -gt 0
		printf '%s\n' $out
	else
		__fish_complete_path (commandline -ct)
	end
end
complete -c wsproof -f -a '(__wsproof_complete)'
`,
}

func (c *cli) completion(ctx context.Context, args []string) error {
	fs := c.newFlags("completion", completionUsage)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.usageErr(fs, "completion needs one shell: bash, zsh or fish")
	}
	script, ok := completionScripts[pos[0]]
	if !ok {
		return c.usageErr(fs, "no completion for shell %q%s: choose bash, zsh or fish", pos[0],
			didYouMean(pos[0], []string{"bash", "zsh", "fish"}))
	}
	fmt.Fprint(c.stdout, script)
	return nil
}

// complete prints the completions of the last word of args after the
// others: a command, a subcommand, a flag of the command (learned by
// running the command with -h and looking at the flag set it made), or the
// key id a keys command takes. It prints nothing where a file name or a
// value goes.
func (c *cli) complete(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return nil
	}
	words, cur := args[:len(args)-1], args[len(args)-1]
	var path []string // the command and subcommand typed so far
	for _, w := range words {
		if strings.HasPrefix(w, "-") {
			continue
		}
		if len(path) == 0 || len(path) == 1 && len(subsOf(path[0])) > 0 {
			path = append(path, w)
		}
	}
	var cands []string
	switch {
	case len(path) == 0 && strings.HasPrefix(cur, "-"):
		cands = []string{"--help", "--version"}
	case len(path) == 0:
		cands = commandNames()
	case len(path) == 1 && len(subsOf(path[0])) > 0 && !strings.HasPrefix(cur, "-"):
		cands = subsOf(path[0])
	case strings.HasPrefix(cur, "-"):
		cands = c.flagsOf(ctx, path)
	case len(path) == 2 && path[0] == "keys" && slices.Contains(kidCommands, path[1]):
		cands = c.keyIDsFor(ctx, path, words)
	}
	for _, s := range cands {
		if strings.HasPrefix(s, cur) {
			fmt.Fprintln(c.stdout, s)
		}
	}
	return nil
}

// subsOf is the subcommands of command name.
func subsOf(name string) []string {
	for _, c := range commands {
		if c.name == name {
			return c.subs
		}
	}
	return nil
}

// flagsOf returns the flags of the command at path, as "--name", sorted.
func (c *cli) flagsOf(ctx context.Context, path []string) []string {
	fs := c.flagSetOf(ctx, path)
	if fs == nil {
		return nil
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	slices.Sort(names)
	return names
}

// flagSetOf runs the command at path with -h, writing nowhere, and returns
// the last flag set it made, its flags at their defaults.
func (c *cli) flagSetOf(ctx context.Context, path []string) *flag.FlagSet {
	if path[0] == "help" || path[0] == completeCmd {
		return nil
	}
	var sets []*flag.FlagSet
	q := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: c.getenv, flagSets: &sets}
	q.run(ctx, append(slices.Clone(path), "-h"))
	if len(sets) == 0 {
		return nil
	}
	return sets[len(sets)-1]
}

// kidCommands are the keys subcommands whose one argument is a key id.
var kidCommands = []string{"show", "update", "revoke", "remove"}

// keyIDWait bounds the reading of a registry for completion (a database
// may be slow to answer, and a shell waits for it).
const keyIDWait = 2 * time.Second

// keyIDsFor returns the key ids of the registry that "wsproof keys SUB"
// would open with the flags among words, when the word being completed is
// its key id: the words after the subcommand parse as its flags, with no
// argument yet. Nothing when they do not, or the registry cannot be read.
func (c *cli) keyIDsFor(ctx context.Context, path, words []string) []string {
	i := slices.Index(words, path[0])
	if i < 0 {
		return nil
	}
	j := slices.Index(words[i+1:], path[1])
	if j < 0 {
		return nil
	}
	fs := c.flagSetOf(ctx, path)
	if fs == nil {
		return nil
	}
	if pos, err := parse(fs, words[i+1+j+1:]); err != nil || len(pos) > 0 {
		return nil
	}
	str := func(name string) *string {
		v := ""
		if f := fs.Lookup(name); f != nil {
			v = f.Value.String()
		}
		return &v
	}
	ctx, cancel := context.WithTimeout(ctx, keyIDWait)
	defer cancel()
	q := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: c.getenv}
	reg, err := q.openStore(ctx, registryFlags{registry: str("registry"), db: str("db"), state: str("state")}, readOnly)
	if err != nil {
		return nil
	}
	defer reg.close()
	var kids []string
	for _, e := range reg.list() {
		kids = append(kids, e.KeyID)
	}
	return kids
}

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

const completionUsage = `Usage: wsproof completion bash|zsh|fish

Prints a shell completion script for commands, subcommands and flags:

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
// others: a command, a subcommand, or a flag of the command (learned by
// running the command with -h and looking at the flag set it made). It
// prints nothing where a file name or a value goes.
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

// flagsOf runs the command at path with -h, writing nowhere, and returns the
// flags of the last flag set it made, as "--name", sorted.
func (c *cli) flagsOf(ctx context.Context, path []string) []string {
	if path[0] == "help" || path[0] == completeCmd {
		return nil
	}
	var sets []*flag.FlagSet
	q := &cli{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: c.getenv, flagSets: &sets}
	q.run(ctx, append(slices.Clone(path), "-h"))
	if len(sets) == 0 {
		return nil
	}
	var names []string
	sets[len(sets)-1].VisitAll(func(f *flag.Flag) { names = append(names, "--"+f.Name) })
	slices.Sort(names)
	return names
}

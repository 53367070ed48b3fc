// Package cli is the licet command line: one binary whose subcommands run
// every role. main only calls Run, so tests run the real program in-process.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/licet/licet/errs"
)

// Version is the licet version. Set it at build time with
// -ldflags "-X github.com/licet/licet/internal/cli.Version=v1.2.3"; when it is
// not set, versionString reads the module version and VCS revision from the
// build information.
var Version = ""

// versionString is what `licet version` prints after "licet ".
func versionString() string {
	v := Version
	bi, ok := debug.ReadBuildInfo()
	if v == "" {
		v = "(devel)"
		if ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
	}
	if !ok {
		return v
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		v += fmt.Sprintf(" (revision %s%s, %s)", rev, dirty, when)
	}
	return v + " " + bi.GoVersion
}

// env is what a command sees of the outside world.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// clock returns the time source of site commands: the system clock, or, for
// tests that need another date (an expired pack, say), the time in $LICET_NOW
// (RFC 3339) advancing from when the command started.
func (e *env) clock() (func() time.Time, error) {
	v := e.getenv("LICET_NOW")
	if v == "" {
		return time.Now, nil
	}
	fake, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil, errs.E(errs.Usage, "$LICET_NOW %q is not an RFC 3339 time", v)
	}
	start := time.Now()
	return func() time.Time { return fake.Add(time.Since(start)) }, nil
}

// command is a leaf or a group of the command tree.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, e *env, args []string) error // leaf
	sub     []*command                                             // group
}

func root() *command {
	return &command{name: "licet", summary: "sell, license, meter and deliver software", sub: []*command{
		devCommand(),
		vendorCommand(),
		siteCommand(),
		agentCommand(),
		licenseCommand(),
		tokenCommand(),
		benchCommand(),
		gatewayCommand(),
		{name: "version", summary: "print the licet version, its VCS revision and Go version", run: func(ctx context.Context, e *env, args []string) error {
			fmt.Fprintln(e.stdout, "licet", versionString())
			return nil
		}},
	}}
}

// Run runs the licet command line args (without the program name). When
// args ask for --json and the command fails, standard output gets the error
// as {"error": {"kind": ..., "message": ...}} too, so scripts always read
// JSON; the message still goes to standard error through main.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	err := dispatch(ctx, e, root(), args, "licet")
	var done *reportedError
	if err != nil && wantsJSON(args) && !errors.As(err, &done) {
		type body struct {
			Kind    string `json:"kind"`
			Message string `json:"message"`
		}
		printJSON(stdout, struct {
			Error body `json:"error"`
		}{body{errs.KindOf(err).String(), err.Error()}})
	}
	return err
}

// wantsJSON reports whether the command line asks for --json output.
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

// reportedError is a failure whose JSON result the command has already
// written (licet token decode's {"status": "invalid", ...}): Run adds no
// error object after it.
type reportedError struct{ err error }

func (r *reportedError) Error() string { return r.err.Error() }
func (r *reportedError) Unwrap() error { return r.err }

func dispatch(ctx context.Context, e *env, c *command, args []string, path string) error {
	if c.run != nil {
		return c.run(ctx, e, args)
	}
	if path == "licet" && len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		args = append([]string{"version"}, args[1:]...)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		printGroupHelp(e.stdout, c, path)
		if len(args) == 0 {
			return errs.E(errs.Usage, "%s: a subcommand is required", path)
		}
		return nil
	}
	for _, s := range c.sub {
		if s.name == args[0] {
			return dispatch(ctx, e, s, args[1:], path+" "+s.name)
		}
	}
	return errs.E(errs.Usage, "%s: unknown subcommand %q; run '%s --help'", path, args[0], path)
}

func printGroupHelp(w io.Writer, c *command, path string) {
	fmt.Fprintf(w, "%s: %s\n\nUsage: %s <command> [flags]\n\nCommands:\n", path, c.summary, path)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	for _, s := range c.sub {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun '%s <command> --help' for a command's flags.\n", path)
	if path == "licet" {
		fmt.Fprint(w, "\nExit codes: 0 ok, 1 failure (retry may help), 2 usage error, 3 input rejected, 4 not authorized.\n")
	}
}

// flagSet makes a leaf command's flags. usage is the argument synopsis,
// description what the command does.
func flagSet(e *env, path, usage, description string) *flag.FlagSet {
	fs := flag.NewFlagSet(path, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(e.stdout, "Usage: %s %s\n\n%s\n\nFlags:\n", path, usage, description)
		fs.SetOutput(e.stdout)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	return fs
}

// errHelp means --help was given and answered; Run returns nil for it.
var errHelp = errors.New("help shown")

// parse parses args, mapping --help to errHelp and bad flags to Usage errors.
// nargs is the number of positional arguments required (-1: any).
// Flags may come before or after positional arguments; "--" ends the flags.
func parse(fs *flag.FlagSet, args []string, nargs int) error {
	// The flag package prints the usage on every error; licet prints it for
	// --help only, and a one-line error with the hint otherwise.
	usage := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = usage }()
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				usage()
				return errHelp
			}
			return errs.E(errs.Usage, "%s: %v; run '%s --help'", fs.Name(), err, fs.Name())
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			positional = append(positional, rest...)
			break
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
	if nargs >= 0 && len(positional) != nargs {
		return errs.E(errs.Usage, "%s: expected %d argument(s), got %d; run '%s --help'", fs.Name(), nargs, len(positional), fs.Name())
	}
	// Leave the positional arguments where fs.Arg finds them.
	fs.Parse(append([]string{"--"}, positional...))
	return nil
}

// leaf wraps a command body so that errHelp ends it successfully.
func leaf(name, summary string, run func(ctx context.Context, e *env, args []string) error) *command {
	return &command{name: name, summary: summary, run: func(ctx context.Context, e *env, args []string) error {
		if err := run(ctx, e, args); !errors.Is(err, errHelp) {
			return err
		}
		return nil
	}}
}

// required returns a Usage error if any of the named flags is empty.
func required(fs *flag.FlagSet, names ...string) error {
	for _, n := range names {
		if f := fs.Lookup(n); f != nil && f.Value.String() == "" {
			return errs.E(errs.Usage, "%s: --%s is required (%s); run '%s --help'", fs.Name(), n, f.Usage, fs.Name())
		}
	}
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printList writes items as indented JSON if asJSON, else as a table of
// one row each (made by row) under header: what every list command prints.
func printList[T any](e *env, asJSON bool, items []T, header []string, row func(T) []string) error {
	if asJSON {
		return printJSON(e.stdout, items)
	}
	rows := make([][]string, 0, len(items))
	for _, it := range items {
		rows = append(rows, row(it))
	}
	table(e.stdout, header, rows)
	return nil
}

// table writes rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// listFlag collects a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// mapFlag collects repeatable key=value flags.
type mapFlag map[string]string

func (m mapFlag) String() string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k+"="+m[k])
	}
	sort.Strings(keys)
	return strings.Join(keys, ",")
}

func (m mapFlag) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("%q is not key=value", v)
	}
	m[k] = val
	return nil
}

// readInput reads a file argument, or standard input for "-".
func readInput(path string) ([]byte, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = io.ReadAll(io.LimitReader(os.Stdin, 16<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, errs.Wrap(errs.Invalid, err, "cannot read %s", path)
	}
	return data, nil
}

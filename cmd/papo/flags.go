package main

import (
	"errors"
	"flag"
	"io"
)

var errHelp = errors.New("help requested")

// parseFlags parses args with fs, allowing flags after positional arguments
// (`papo analyze in.arrow -o out.arrow`), and returns the positional arguments.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) ([]string, error) {
	fs.SetOutput(stderr)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errHelp
			}
			return nil, usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
		if len(args) > 0 && args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
	}
}

// flagSet is a FlagSet whose usage line names the command.
func flagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("papo "+name, flag.ContinueOnError)
	fs.Usage = func() {
		w := fs.Output()
		io.WriteString(w, "Usage: papo "+name+" "+synopsis+"\n\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// flagWasSet reports whether the user gave flag name on the command line.
func flagWasSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

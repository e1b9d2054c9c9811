package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"

	"github.com/xoauth2-proxy/xoauth2-proxy/internal/importer"
	"github.com/xoauth2-proxy/xoauth2-proxy/internal/secret"
)

// secretsHelp is said in the -h of every command that takes secrets.
const secretsHelp = `Secrets are never taken as values on the command line: there every local user can read them
in the process list (/proc/PID/cmdline, ps) and they stay in the shell's history. Give each
one as --NAME-file PATH (the file's first line), --NAME-env VAR (an environment variable), or
--NAME - (stdin; on a terminal a prompt that does not echo). Only one can come from stdin.
`

// secretFlag is a secret the command line says where to find, never what
// it is: --NAME-file PATH, --NAME-env VAR, or --NAME - for stdin. The
// old tool had no such flags (COMPAT.md), so a value after --NAME is
// refused rather than accepted with a warning.
type secretFlag struct {
	name string // NAME, e.g. "client-secret"
	arg  string // --NAME: only "-" is accepted
	file string // --NAME-file
	env  string // --NAME-env
}

// register defines --NAME, --NAME-file and --NAME-env on fs; what says
// what the secret is ("OAuth client secret (required for gmail)").
func (s *secretFlag) register(fs *flag.FlagSet, name, what string) {
	s.name = name
	fs.StringVar(&s.arg, name, "", what+`: "-" reads it from stdin; a value here is refused (see --`+name+"-file)")
	fs.StringVar(&s.file, name+"-file", "", "file holding the "+name+" (its first line)")
	fs.StringVar(&s.env, name+"-env", "", "environment variable holding the "+name)
}

// secretInput is where secretFlag values are read from.
type secretInput struct {
	stdin   io.Reader
	stderr  io.Writer // prompts and warnings
	getenv  func(string) string
	stdinBy string // the flag that has read stdin, "" while none has
}

// read returns the secret s points at, or the zero String when none of
// its flags is set. Errors name the flag and the file or variable, never
// the secret.
func (in *secretInput) read(s *secretFlag) (secret.String, error) {
	given := 0
	for _, v := range []string{s.arg, s.file, s.env} {
		if v != "" {
			given++
		}
	}
	var v, from string
	var err error
	switch {
	case given == 0:
		return secret.String{}, nil
	case given > 1:
		return secret.String{}, fmt.Errorf("--%[1]s, --%[1]s-file and --%[1]s-env: give only one", s.name)
	case s.arg != "" && s.arg != "-":
		return secret.String{}, fmt.Errorf("--%[1]s takes no value on the command line: every local user can read it "+
			"in the process list (/proc/PID/cmdline) and it stays in your shell history (remove it from there). "+
			"Use --%[1]s-file PATH, --%[1]s-env VAR or --%[1]s - (stdin)", s.name)
	case s.arg == "-":
		if in.stdinBy != "" {
			return secret.String{}, fmt.Errorf("--%s - and --%s -: only one value can be read from stdin", in.stdinBy, s.name)
		}
		in.stdinBy, from = s.name, "stdin"
		v, err = readSecret(in.stdin, in.stderr, strings.ReplaceAll(s.name, "-", " "))
	case s.file != "":
		from = "--" + s.name + "-file " + s.file
		if v, err = readSecretFile(s.file); err == nil {
			if w := readableByOthers(s.file); w != "" {
				fmt.Fprintf(in.stderr, "warning: %s is %s; chmod 600 it\n", from, w)
			}
		}
	default:
		from = "--" + s.name + "-env " + s.env
		v = in.getenv(s.env)
	}
	if err != nil {
		return secret.String{}, fmt.Errorf("--%s: %w", s.name, err)
	}
	if v = strings.TrimSpace(v); v == "" {
		return secret.String{}, fmt.Errorf("--%s: %s gave an empty value", s.name, from)
	}
	return secret.New(v), nil
}

// readSecretFile returns the first line of a secret file.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return firstLine(f)
}

// readSecret reads one secret from stdin: on a terminal after a prompt,
// without echo; otherwise its first line. The line ending is dropped.
func readSecret(stdin io.Reader, stderr io.Writer, prompt string) (string, error) {
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(stderr, prompt+": ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("read %s from the terminal: %w", prompt, err)
		}
		return string(b), nil
	}
	line, err := firstLine(stdin)
	if err != nil {
		return "", fmt.Errorf("read %s from stdin: %w", prompt, err)
	}
	return line, nil
}

// firstLine reads r's first line, without its line ending; a line longer
// than importer.MaxLineBytes is an error. Empty input is an empty line.
func firstLine(r io.Reader) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, importer.MaxLineBytes+1))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	if line = strings.TrimRight(line, "\r\n"); len(line) > importer.MaxLineBytes {
		return "", fmt.Errorf("longer than %d bytes", importer.MaxLineBytes)
	}
	return line, nil
}

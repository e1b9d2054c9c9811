package main

import (
	"strings"
	"testing"
)

// --help (and -h, help) lists every subcommand with its one line, and
// the flags of serve, which runs without a command.
func TestHelp_listsEveryCommand(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "-help", "help"} {
		t.Run(arg, func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCmd(t, "", arg)
			if code != 0 || errs != "" {
				t.Fatalf("exit %d, stderr %q", code, errs)
			}
			for _, c := range commands() {
				if !strings.Contains(out, "\n  "+c.name+strings.Repeat(" ", 15-len(c.name))+c.synopsis+"\n") {
					t.Errorf("--help lacks the line of %s", c.name)
				}
			}
			for _, want := range []string{"-accounts string", "-admin-token-file", "\nExample:\n  xoauth2-proxy "} {
				if !strings.Contains(out, want) {
					t.Errorf("--help lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// Every subcommand's -h (and "help COMMAND") exits 0 and ends with an
// example.
func TestSubcommandHelp_endsWithExample(t *testing.T) {
	t.Parallel()
	type tc struct {
		args []string
		want string // what the example runs
	}
	var cases []tc
	for _, c := range commands() {
		want := "xoauth2-proxy " + c.name
		cases = append(cases, tc{[]string{c.name, "-h"}, want}, tc{[]string{"help", c.name}, want})
	}
	for _, sub := range []string{"list", "add", "remove", "import"} {
		cases = append(cases, tc{[]string{"accounts", sub, "-h"}, "xoauth2-proxy accounts " + sub})
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCmd(t, "", c.args...)
			if code != 0 {
				t.Fatalf("exit %d\n%s%s", code, out, errs)
			}
			help := out + errs
			i := strings.LastIndex(help, "\nExample:\n")
			if i < 0 {
				t.Fatalf("no Example:\n%s", help)
			}
			example := help[i+len("\nExample:\n"):]
			if !strings.Contains(example, c.want+" ") && !strings.Contains(example, c.want+"\n") {
				t.Errorf("example %q does not run %q", example, c.want)
			}
			for _, line := range strings.Split(strings.TrimSuffix(example, "\n"), "\n") {
				if !strings.HasPrefix(line, "  ") {
					t.Errorf("-h does not end with its example: %q follows it", line)
				}
			}
		})
	}
}

func TestUnknownCommand_namesTheCommands(t *testing.T) {
	t.Parallel()
	code, _, errs := runCmd(t, "", "frobnicate")
	if code != 2 || !strings.Contains(errs, commandNames()) {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

// Command compose-check loads Compose files the way `docker compose config` does, with
// compose-go, the library Docker Compose itself parses files with: interpolation, YAML merges,
// validation against the Compose Specification's JSON schema (the copy compose-go embeds), and
// the consistency checks (depends_on, volumes, networks and secrets that name nothing). It needs
// no Docker engine. On success it prints the resolved project as JSON, every profile included,
// for deploy/static-checks.sh to read; on failure it prints the loader's error and exits 1.
//
//	go run ./deploy/compose/check deploy/compose/compose.yaml
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-check COMPOSE_FILE...")
		os.Exit(2)
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "compose-check: %v\n", err)
		os.Exit(1)
	}
}

func run(files []string) error {
	options, err := cli.NewProjectOptions(files,
		cli.WithOsEnv,
		cli.WithDotEnv,
		// every service, including those behind a profile (the `platform` CLI's `tools`)
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return fmt.Errorf("render the project: %w", err)
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}

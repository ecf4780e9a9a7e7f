// composecheck loads a compose file the way `docker compose config` does (compose-go: the
// Compose Specification's loader, interpolation and JSON-schema validation) and prints one
// line: the number of services, or the loader's error (exit 1).
//
//	go build -o composecheck . && ./composecheck docker-compose.yml .env .
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Println("usage: composecheck COMPOSE_FILE ENV_FILE WORKING_DIR")
		os.Exit(2)
	}
	opts, err := cli.NewProjectOptions([]string{os.Args[1]},
		cli.WithEnvFiles(os.Args[2]), cli.WithDotEnv, cli.WithWorkingDirectory(os.Args[3]))
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Printf("%d services\n", len(project.Services))
}

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/spf13/cobra"

	ecrauth "github.com/ecr-proxy/ecr-proxy/auth"
)

// newGetCmd is the "get" verb of the docker credential helper protocol:
// it reads a registry host on stdin and prints ECR credentials for it.
// ecr-proxy points distribution's proxy.exec at it; it also works as
// docker-credential-ecr-proxy (a link to this binary) for docker itself.
func newGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:          "get",
		Short:        "print ECR credentials for the registry host read on stdin (docker credential helper protocol)",
		Hidden:       true,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return credentialHelperGet(cmd, os.Stdin, os.Stdout)
		},
	}
}

func credentialHelperGet(cmd *cobra.Command, in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && err != io.EOF {
		return fmt.Errorf("read registry host: %w", err)
	}
	host := strings.TrimSpace(line)
	if host == "" {
		return fmt.Errorf("read registry host: empty input")
	}
	region, err := ecrauth.ResolveRegion("", os.Getenv("AWS_REGION"), os.Getenv("AWS_DEFAULT_REGION"), host)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	cfg, err := loadAWSConfig(ctx, region)
	if err != nil {
		return err
	}
	ts, err := ecrauth.NewTokenSource(ecr.NewFromConfig(cfg))
	if err != nil {
		return err
	}
	tok, err := ts.Token(ctx)
	if err != nil {
		return err
	}
	return json.NewEncoder(out).Encode(struct {
		ServerURL string
		Username  string
		Secret    string
	}{host, tok.Username, tok.Password})
}

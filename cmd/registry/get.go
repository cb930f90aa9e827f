package main

import (
	"bufio"
	"encoding/json"
	"errors"
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

// placeholderEnv, set by serve for its own children, makes "get" print a
// placeholder credential: the server's auth.Transport replaces it with the
// live token on every request (see package auth).
const placeholderEnv = "ECR_PROXY_EXEC_PLACEHOLDER"

// placeholderSecret is what "get" prints in placeholder mode. It is not a
// credential and ECR would refuse it.
const placeholderSecret = "set-by-ecr-proxy-transport" //nolint:gosec // a documented placeholder, not a credential

func credentialHelperGet(cmd *cobra.Command, in io.Reader, out io.Writer) error {
	line, err := bufio.NewReader(in).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read registry host: %w", err)
	}
	host := strings.TrimSpace(line)
	if host == "" {
		return fmt.Errorf("read registry host: empty input")
	}
	if os.Getenv(placeholderEnv) == "1" {
		return writeCredentials(out, host, "AWS", placeholderSecret)
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
	return writeCredentials(out, host, tok.Username, tok.Password)
}

// writeCredentials prints the helper protocol's answer to "get".
func writeCredentials(out io.Writer, host, user, secret string) error {
	//nolint:gosec // the credential helper protocol's answer is the secret, on stdout, to its caller
	return json.NewEncoder(out).Encode(struct {
		ServerURL string
		Username  string
		Secret    string
	}{host, user, secret})
}

package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRegistryURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want Registry
	}{
		{"https://123456789012.dkr.ecr.eu-central-1.amazonaws.com", Registry{"123456789012", "eu-central-1", false, "amazonaws.com"}},
		{"123456789012.dkr.ecr.us-east-1.amazonaws.com:443/some/path", Registry{"123456789012", "us-east-1", false, "amazonaws.com"}},
		{"https://123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", Registry{"123456789012", "us-gov-west-1", true, "amazonaws.com"}},
		{"123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", Registry{"123456789012", "cn-north-1", false, "amazonaws.com.cn"}},
		{"123456789012.dkr-ecr.eu-west-1.on.aws", Registry{"123456789012", "eu-west-1", false, "on.aws"}},
		{"123456789012.dkr-ecr-fips.us-east-2.on.aws", Registry{"123456789012", "us-east-2", true, "on.aws"}},
		{"123456789012.dkr.ecr.cn-northwest-1.on.amazonwebservices.com.cn", Registry{"123456789012", "cn-northwest-1", false, "on.amazonwebservices.com.cn"}},
		{"HTTPS://123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM", Registry{"123456789012", "eu-west-1", false, "amazonaws.com"}},
		{"123456789012.dkr.ecr.us-iso-east-1.c2s.ic.gov", Registry{"123456789012", "us-iso-east-1", false, "c2s.ic.gov"}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseRegistryURL(tt.in)
			if err != nil {
				t.Fatalf("ParseRegistryURL(%q): %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseRegistryURL(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestParseRegistryURLRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"http://127.0.0.1:5000",
		"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com.evil.example.com",
		"https://12345678901.dkr.ecr.eu-west-1.amazonaws.com",
		"https://public.ecr.aws",
		"https://registry.example.com/123456789012.dkr.ecr.eu-west-1.amazonaws.com",
		"",
	} {
		t.Run(in, func(t *testing.T) {
			t.Parallel()
			if _, err := ParseRegistryURL(in); !errors.Is(err, ErrNotECR) {
				t.Errorf("ParseRegistryURL(%q) error = %v, want ErrNotECR", in, err)
			}
		})
	}
}

func TestResolveRegion(t *testing.T) {
	t.Parallel()
	const ecrURL = "https://123456789012.dkr.ecr.ap-south-1.amazonaws.com"
	tests := []struct {
		name                                  string
		explicit, awsRegion, awsDefault, ecrU string
		want                                  string
	}{
		{"explicit wins", "eu-west-3", "us-east-1", "us-east-2", ecrURL, "eu-west-3"},
		{"the host's region over AWS_REGION", "", "us-east-1", "us-east-2", ecrURL, "ap-south-1"},
		{"the host's region over AWS_DEFAULT_REGION", "", "", "us-east-2", ecrURL, "ap-south-1"},
		{"from the URL alone", "", "", "", ecrURL, "ap-south-1"},
		{"China", "", "us-east-1", "", "https://123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn", "cn-north-1"},
		{"FIPS", "", "us-east-1", "", "https://123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "us-gov-west-1"},
		{"dual-stack", "", "us-east-1", "", "https://123456789012.dkr-ecr.eu-west-1.on.aws", "eu-west-1"},
		{"AWS_REGION for a host that is not ECR's", "", "us-east-1", "us-east-2", "http://127.0.0.1:5000", "us-east-1"},
		{"AWS_DEFAULT_REGION next", "", "", "us-east-2", "http://127.0.0.1:5000", "us-east-2"},
		{"loopback with explicit", "eu-west-1", "", "", "http://127.0.0.1:5000", "eu-west-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ResolveRegion(tt.explicit, tt.awsRegion, tt.awsDefault, tt.ecrU)
			if err != nil {
				t.Fatalf("ResolveRegion: %v", err)
			}
			if got != tt.want {
				t.Errorf("ResolveRegion = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestChooseRegionSaysWhenRegionsDiffer: ECS and CodeBuild set AWS_REGION
// to their own region, which need not be the registry's; the choice says
// once which region is used and why, and says nothing when all agree.
func TestChooseRegionSaysWhenRegionsDiffer(t *testing.T) {
	t.Parallel()
	const ecrURL = "https://123456789012.dkr.ecr.eu-west-1.amazonaws.com"
	tests := []struct {
		name                            string
		explicit, awsRegion, awsDefault string
		region                          string
		note                            []string // all in the note; none: no note
	}{
		{"all agree", "", "eu-west-1", "eu-west-1", "eu-west-1", nil},
		{"nothing set", "", "", "", "eu-west-1", nil},
		{"AWS_REGION differs", "", "us-east-1", "", "eu-west-1",
			[]string{"AWS_REGION", "us-east-1", "eu-west-1", "123456789012.dkr.ecr.eu-west-1.amazonaws.com", "minted in eu-west-1", "only in the region"}},
		{"AWS_DEFAULT_REGION differs", "", "", "us-west-2", "eu-west-1",
			[]string{"AWS_DEFAULT_REGION", "us-west-2", "minted in eu-west-1"}},
		{"ecr.region differs", "us-east-1", "", "", "us-east-1",
			[]string{"ecr.region", "us-east-1", "eu-west-1", "minted in us-east-1"}},
		{"ecr.region agrees, AWS_REGION differs", "eu-west-1", "us-east-1", "", "eu-west-1", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ChooseRegion(tt.explicit, tt.awsRegion, tt.awsDefault, ecrURL)
			if err != nil {
				t.Fatalf("ChooseRegion: %v", err)
			}
			if got.Region != tt.region {
				t.Errorf("region = %q, want %q", got.Region, tt.region)
			}
			if len(tt.note) == 0 && got.Note != "" {
				t.Errorf("note = %q, want none", got.Note)
			}
			for _, want := range tt.note {
				if !strings.Contains(got.Note, want) {
					t.Errorf("note %q does not mention %q", got.Note, want)
				}
			}
		})
	}
}

func TestResolveRegionNamesBothFixes(t *testing.T) {
	t.Parallel()
	_, err := ResolveRegion("", "", "", "http://127.0.0.1:5000")
	if !errors.Is(err, ErrNoRegion) {
		t.Fatalf("error = %v, want ErrNoRegion", err)
	}
	for _, want := range []string{"ecr.region", "AWS_REGION", "127.0.0.1:5000"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func FuzzParseRegistryURL(f *testing.F) {
	for _, s := range []string{"https://123456789012.dkr.ecr.eu-west-1.amazonaws.com", "123456789012.dkr-ecr.us-east-1.on.aws", "http://127.0.0.1:5000", "::"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		reg, err := ParseRegistryURL(in)
		if err != nil {
			return
		}
		if len(reg.AccountID) != 12 || reg.Region == "" || reg.DNSSuffix == "" {
			t.Fatalf("ParseRegistryURL(%q) = %+v: incomplete", in, reg)
		}
	})
}

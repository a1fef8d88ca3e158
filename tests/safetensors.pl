# safetensors.pl — safetensors files for the shell tests (lib.sh's st):
#   st ids FILE             the reference's training examples as JSONL
#   st f64 FILE NAME        a tensor's values, one a line
#   st diff A B [PREFIX]    the worst per-tensor relative difference
#                           ||a - b|| / ||b|| of A's tensors against B's
#                           PREFIX.NAME, and that tensor's name
# diff leaves out the key biases outside the rotary dimensions: their
# gradient is exactly 0 (softmax ignores them), so what moves them is
# rounding noise, which Adam amplifies to lr/100 a step (tests/unit/train.c).
# The head sizes are tiny-neox's (tests/data/tiny-neox).
use strict; use JSON::PP;
sub load { my ($f) = @_; open my $h, '<:raw', $f or die "$f: $!\n"; local $/; my $d = <$h>;
	my $n = unpack 'Q<', substr($d, 0, 8); my $j = decode_json(substr($d, 8, $n)); delete $j->{__metadata__};
	my %t; for my $k (keys %$j) { my ($b, $e) = @{$j->{$k}{data_offsets}}; my $raw = substr($d, 8 + $n + $b, $e - $b);
		my $ty = $j->{$k}{dtype}; $t{$k} = [unpack $ty eq 'F32' ? 'f<*' : $ty eq 'F64' ? 'd<*' : 'q<*', $raw] } \%t }
my ($what, $file) = splice @ARGV, 0, 2; my $t = load($file);
if ($what eq 'ids') { for (my $i = 0; $t->{"train.ex$i.prompt"}; $i++) {
	printf "{\"question\":[%s],\"answer\":[%s]}\n", join(',', @{$t->{"train.ex$i.prompt"}}), join(',', @{$t->{"train.ex$i.answer"}}) } }
elsif ($what eq 'f64') { print "$_\n" for @{$t->{$ARGV[0]}} }
elsif ($what eq 'diff') { my $b = load($ARGV[0]); my $p = defined $ARGV[1] ? "$ARGV[1]." : ''; my ($w, $wk) = (0, 'none');
	my ($hd, $rot) = (16, 4); # tiny-neox: head_dim 16, rotary_pct 0.25
	for my $k (sort keys %$t) { my ($x, $y) = ($t->{$k}, $b->{"$p$k"}); die "$p$k: missing or of another size\n" unless $y && @$x == @$y;
		my ($num, $den) = (0, 0);
		for my $i (0 .. $#$y) { next if $k =~ /query_key_value\.bias$/ && int(($i % (3 * $hd)) / $hd) == 1 && $i % $hd >= $rot;
			my $d = $x->[$i] - $y->[$i]; $num += $d * $d; $den += $y->[$i] ** 2 }
		my $r = sqrt($num) / ($den > 0 ? sqrt($den) : 1); ($w, $wk) = ($r, $k) if $r > $w || $r != $r }
	printf "%.3g %s\n", $w, $wk }

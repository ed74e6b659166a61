//! The machine a benchmark ran on, as its records name it: the CPU's model and its x86-64
//! instruction-set level.

/// The CPU's model name (`/proc/cpuinfo`'s first `model name`), or the architecture's name
/// where the system does not give one.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| model_name(&text))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The first `model name` of a `/proc/cpuinfo` text.
fn model_name(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_string())
        .filter(|name| !name.is_empty())
}

/// The highest x86-64 microarchitecture level the CPU has: `x86-64-v4` (AVX-512 F, BW, CD, DQ
/// and VL), `x86-64-v3` (AVX2, FMA, BMI1/2, F16C, LZCNT, MOVBE), `x86-64-v2` (SSE4.2, SSSE3,
/// POPCNT, CMPXCHG16B) or `x86-64`; the architecture's name on other CPUs.
pub fn isa_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        let v2 = has!("sse3")
            && has!("ssse3")
            && has!("sse4.1")
            && has!("sse4.2")
            && has!("popcnt")
            && has!("cmpxchg16b");
        let v3 = v2
            && has!("avx")
            && has!("avx2")
            && has!("bmi1")
            && has!("bmi2")
            && has!("f16c")
            && has!("fma")
            && has!("lzcnt")
            && has!("movbe")
            && has!("xsave");
        let v4 = v3
            && has!("avx512f")
            && has!("avx512bw")
            && has!("avx512cd")
            && has!("avx512dq")
            && has!("avx512vl");
        match (v2, v3, v4) {
            (_, _, true) => "x86-64-v4",
            (_, true, _) => "x86-64-v3",
            (true, _, _) => "x86-64-v2",
            _ => "x86-64",
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        std::env::consts::ARCH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_name_is_the_first_one() {
        let text = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\n\
                    flags\t\t: fpu\n\nprocessor\t: 1\nmodel name\t: other\n";
        assert_eq!(model_name(text).as_deref(), Some("AMD EPYC 9R14"));
        assert_eq!(model_name("processor\t: 0\nmodel name\t:  \n"), None);
        assert_eq!(model_name(""), None);
    }

    /// Each level includes the one below: a CPU at a level also passes the lower levels'
    /// checks, and the name is one of the four (or the architecture's).
    #[test]
    fn the_level_is_a_known_name() {
        let level = isa_level();
        #[cfg(target_arch = "x86_64")]
        {
            assert!(
                ["x86-64", "x86-64-v2", "x86-64-v3", "x86-64-v4"].contains(&level),
                "{level}"
            );
            if level == "x86-64-v4" {
                assert!(std::arch::is_x86_feature_detected!("avx2"));
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(level, std::env::consts::ARCH);
        assert!(!cpu_model().is_empty());
    }
}

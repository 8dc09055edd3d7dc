//! Results shaped for the protocol version a session negotiated: content types
//! newer than the session's version are rewritten into ones it knows, since
//! older clients (candle-vllm's asks for 2024-11-05) fail on types they lack.
//! `resource_link` (2025-06-18) becomes a text item naming the resource;
//! `audio` (2025-03-26) a text item describing it.

use rmcp::model::{CallToolResult, ContentBlock, ProtocolVersion};

/// The first version with `resource_link` content.
const RESOURCE_LINKS_FROM: &str = "2025-06-18";
/// The first version with `audio` content.
const AUDIO_FROM: &str = "2025-03-26";

/// `result` as a session at `version` can read it.
pub(super) fn adapt(mut result: CallToolResult, version: &ProtocolVersion) -> CallToolResult {
    // Versions are dates: they order as strings.
    let version = version.as_str();
    if version >= RESOURCE_LINKS_FROM {
        return result;
    }
    for item in &mut result.content {
        let text = match &*item {
            ContentBlock::ResourceLink(link) => {
                let mut text = format!("resource {}: {}", link.name, link.uri);
                if let Some(mime) = &link.mime_type {
                    text.push_str(&format!(" ({mime})"));
                }
                if let Some(description) = &link.description {
                    text.push_str(&format!(" - {description}"));
                }
                text
            }
            ContentBlock::Audio(audio) if version < AUDIO_FROM => format!(
                "[audio, {}, {} bytes of base64 not shown: this protocol version has no audio content]",
                audio.mime_type,
                audio.data.len()
            ),
            _ => continue,
        };
        *item = ContentBlock::text(text);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::Resource;

    fn link() -> ContentBlock {
        let mut resource = Resource::new("demo://resource/1", "Resource 1");
        resource.mime_type = Some("text/plain".into());
        ContentBlock::resource_link(resource)
    }

    #[test]
    fn older_sessions_get_text_for_newer_content() {
        let result = CallToolResult::success(vec![
            ContentBlock::text("first"),
            link(),
            ContentBlock::audio("AAAA", "audio/wav"),
        ]);
        let old = adapt(result.clone(), &ProtocolVersion::V_2024_11_05);
        assert_eq!(old.content[0], ContentBlock::text("first"));
        assert_eq!(
            old.content[1],
            ContentBlock::text("resource Resource 1: demo://resource/1 (text/plain)")
        );
        assert!(
            old.content[2]
                .as_text()
                .unwrap()
                .text
                .starts_with("[audio, audio/wav")
        );

        let march = adapt(result.clone(), &ProtocolVersion::V_2025_03_26);
        assert!(
            march.content[1].as_text().is_some(),
            "no links before 2025-06-18"
        );
        assert_eq!(
            march.content[2], result.content[2],
            "audio exists since 2025-03-26"
        );

        let june = adapt(result.clone(), &ProtocolVersion::V_2025_06_18);
        assert_eq!(june, result);
    }
}

//! gRPC framing of Agora's four messages without a copy of the tensors (issue 15).
//!
//! tonic's codec encodes every message into one fresh buffer and gathers every received DATA
//! frame into another before decoding: two copies of each tensor per hop. Here a message is
//! encoded as a list of chunks, the protobuf envelope in small buffers and each tensor's `data`
//! as the very [`Bytes`] its owner holds, which HTTP/2 hands to the socket as they are; and a
//! received message is decoded from the list of frames as they arrived ([`Chunks`]), so a
//! tensor that arrived in one frame (the sender gives it one, see [`MessageWriter`]) decodes
//! as a slice of that frame. The bytes on the wire are exactly prost's encoding (field order
//! included), so any gRPC peer reads and writes them; a property test checks it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body::Frame;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost::Message;
use tonic::codegen::http::HeaderMap;

use crate::proto;

/// gRPC's message prefix: a compression flag and a big-endian u32 length.
pub(crate) const PREFIX: usize = 5;

/// Tensor bytes below this are copied into the envelope: one frame instead of three costs less
/// than the copy.
const INLINE_DATA: usize = 16 << 10;

/// One gRPC message (prefix included) as chunks to send in order.
#[derive(Clone, Debug, Default)]
pub(crate) struct Encoded {
    chunks: Vec<Bytes>,
}

impl Encoded {
    /// The protobuf message's bytes, without the gRPC prefix: what a MAC covers the digest of.
    pub(crate) fn message_chunks(&self) -> impl Iterator<Item = &[u8]> {
        let mut skip = PREFIX;
        self.chunks.iter().map(move |c| {
            let n = skip.min(c.len());
            skip -= n;
            &c[n..]
        })
    }

    /// The same bytes as [`Encoded::message_chunks`], as `Bytes` (shared, not copied).
    pub(crate) fn message_parts(&self) -> Vec<Bytes> {
        let mut skip = PREFIX;
        self.chunks
            .iter()
            .map(|c| {
                let n = skip.min(c.len());
                skip -= n;
                c.slice(n..)
            })
            .collect()
    }

    /// Length of the protobuf message, without the prefix.
    pub(crate) fn message_len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum::<usize>() - PREFIX
    }

    pub(crate) fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }
}

/// Builds an [`Encoded`] field by field, in field-number order as prost does. Tensor fields
/// come first in all four messages, so the rest of a message is encoded by prost itself with
/// its tensors taken out ([`MessageWriter::rest`]).
pub(crate) struct MessageWriter {
    chunks: Vec<Bytes>,
    buf: BytesMut,
    len: usize,
}

impl MessageWriter {
    /// `len` is the message's encoded length, which goes into the gRPC prefix.
    pub(crate) fn new(len: usize) -> MessageWriter {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_u8(0);
        buf.put_u32(len as u32);
        MessageWriter { chunks: Vec::with_capacity(4), buf, len }
    }

    /// Field `tag`, a `Tensor`; its data travels as its own chunk unless it is small.
    pub(crate) fn tensor(&mut self, tag: u32, t: &proto::Tensor) {
        encode_key(tag, WireType::LengthDelimited, &mut self.buf);
        encode_varint(t.encoded_len() as u64, &mut self.buf);
        if !t.data.is_empty() {
            encode_key(1, WireType::LengthDelimited, &mut self.buf);
            encode_varint(t.data.len() as u64, &mut self.buf);
            if t.data.len() < INLINE_DATA {
                self.buf.put_slice(&t.data);
            } else {
                self.chunks.push(self.buf.split().freeze());
                self.chunks.push(t.data.clone());
            }
        }
        // Fields 2.. of the tensor: prost's own encoding of the tensor without its data.
        let rest = proto::Tensor {
            data: Bytes::new(),
            dtype: t.dtype,
            shape: t.shape.clone(),
            modality: t.modality,
        };
        rest.encode_raw(&mut self.buf);
    }

    /// The remaining fields: `message` with its tensor fields set to `None`.
    pub(crate) fn rest(mut self, message: &impl Message) -> Encoded {
        message.encode_raw(&mut self.buf);
        if !self.buf.is_empty() {
            self.chunks.push(self.buf.split().freeze());
        }
        let encoded = Encoded { chunks: self.chunks };
        debug_assert_eq!(encoded.message_len(), self.len);
        encoded
    }
}

/// Encodes one of the four messages into chunks. Tensors are fields 1 (and 2 for a
/// BackwardRequest); `strip` returns the message without them, for prost to encode the rest.
pub(crate) fn encode<M: Message>(
    message: &M,
    tensors: &[(u32, Option<&proto::Tensor>)],
    strip: impl FnOnce(&M) -> M,
) -> Encoded {
    let mut w = MessageWriter::new(message.encoded_len());
    for (tag, t) in tensors {
        if let Some(t) = t {
            w.tensor(*tag, t);
        }
    }
    w.rest(&strip(message))
}

pub(crate) fn forward_request(m: &proto::ForwardRequest) -> Encoded {
    encode(m, &[(1, m.inputs.as_ref())], |m| proto::ForwardRequest { inputs: None, ..m.clone() })
}

pub(crate) fn backward_request(m: &proto::BackwardRequest) -> Encoded {
    encode(m, &[(1, m.inputs.as_ref()), (2, m.grads.as_ref())], |m| proto::BackwardRequest {
        inputs: None,
        grads: None,
        ..m.clone()
    })
}

pub(crate) fn forward_response(m: &proto::ForwardResponse) -> Encoded {
    encode(m, &[(1, m.outputs.as_ref())], |m| proto::ForwardResponse { outputs: None, ..m.clone() })
}

pub(crate) fn backward_response(m: &proto::BackwardResponse) -> Encoded {
    encode(m, &[(1, m.grads.as_ref())], |m| proto::BackwardResponse { grads: None, ..m.clone() })
}

/// A small message (a handshake's) in one chunk: no tensor to keep out of the copy.
pub(crate) fn whole(m: &impl Message) -> Encoded {
    let len = m.encoded_len();
    let mut buf = BytesMut::with_capacity(PREFIX + len);
    buf.put_u8(0);
    buf.put_u32(len as u32);
    m.encode_raw(&mut buf);
    Encoded { chunks: vec![buf.freeze()] }
}

/// Received chunks read as one buffer. `copy_to_bytes`, which prost uses for `bytes` fields,
/// slices a chunk when the field lies inside it and copies only a field split across chunks.
#[derive(Debug, Default)]
pub(crate) struct Chunks {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl Chunks {
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.remaining += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    #[cfg(test)]
    fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.chunks.iter()
    }
}

impl Buf for Chunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c.as_ref())
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the chunks");
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.chunks.front_mut() else { return };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn copy_to_bytes(&mut self, len: usize) -> Bytes {
        assert!(len <= self.remaining, "copy_to_bytes past the end of the chunks");
        if let Some(front) = self.chunks.front_mut() {
            if len <= front.len() {
                let out = front.split_to(len);
                if front.is_empty() {
                    self.chunks.pop_front();
                }
                self.remaining -= len;
                return out;
            }
        }
        let mut out = BytesMut::with_capacity(len);
        out.put((&mut *self).take(len));
        out.freeze()
    }
}

/// Why a received gRPC body was not one well-formed message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("compressed messages are not accepted")]
    Compressed,
    #[error("the message is {got} bytes, more than the {max} accepted")]
    TooLong { got: u64, max: u64 },
    #[error("bytes after the message: a unary call carries one")]
    Trailing,
    #[error("the body ended after {got} of the message's {declared} bytes")]
    Truncated { declared: u64, got: u64 },
}

/// Reads one gRPC message from DATA frames as they arrive, bounded before anything is kept.
#[derive(Debug)]
pub(crate) struct MessageReader {
    prefix: [u8; PREFIX],
    prefix_len: usize,
    declared: Option<u64>,
    max: u64,
    chunks: Chunks,
}

impl MessageReader {
    /// Refuses a message longer than `max` from its prefix, before reading it.
    pub(crate) fn new(max: u64) -> MessageReader {
        MessageReader { prefix: [0; PREFIX], prefix_len: 0, declared: None, max, chunks: Chunks::default() }
    }

    /// The message's length once its prefix arrived.
    pub(crate) fn declared(&self) -> Option<u64> {
        self.declared
    }

    pub(crate) fn received(&self) -> u64 {
        self.chunks.remaining as u64
    }

    #[cfg(test)]
    fn is_complete(&self) -> bool {
        self.declared == Some(self.received())
    }

    /// Takes one DATA frame; returns the part of it that belongs to the message (kept, and
    /// handed back for digesting), after the prefix.
    pub(crate) fn push(&mut self, mut frame: Bytes) -> Result<Bytes, FrameError> {
        if self.prefix_len < PREFIX {
            let n = (PREFIX - self.prefix_len).min(frame.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&frame[..n]);
            self.prefix_len += n;
            frame.advance(n);
            if self.prefix_len < PREFIX {
                return Ok(Bytes::new());
            }
            if self.prefix[0] != 0 {
                return Err(FrameError::Compressed);
            }
            let len = u64::from(u32::from_be_bytes([
                self.prefix[1],
                self.prefix[2],
                self.prefix[3],
                self.prefix[4],
            ]));
            if len > self.max {
                return Err(FrameError::TooLong { got: len, max: self.max });
            }
            self.declared = Some(len);
        }
        let declared = self.declared.unwrap_or(0);
        if self.received() + frame.len() as u64 > declared {
            return Err(FrameError::Trailing);
        }
        self.chunks.push(frame.clone());
        Ok(frame)
    }

    /// The whole message, once the body ended.
    pub(crate) fn finish(self) -> Result<Chunks, FrameError> {
        match self.declared {
            Some(d) if d == self.received() => Ok(self.chunks),
            declared => Err(FrameError::Truncated { declared: declared.unwrap_or(0), got: self.received() }),
        }
    }
}

/// A unary gRPC response or request body: the chunks of one message, then (for a response)
/// the trailers.
pub(crate) struct ChunkBody {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
    remaining: usize,
}

impl ChunkBody {
    pub(crate) fn new(encoded: Encoded, trailers: Option<HeaderMap>) -> ChunkBody {
        let chunks: VecDeque<Bytes> = encoded.into_chunks().into();
        let remaining = chunks.iter().map(Bytes::len).sum();
        ChunkBody { chunks, trailers, remaining }
    }
}

impl http_body::Body for ChunkBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        if let Some(chunk) = self.chunks.pop_front() {
            self.remaining -= chunk.len();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty() && self.trailers.is_none()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tensor(n: usize, shape: Vec<u64>, dtype: i32) -> proto::Tensor {
        proto::Tensor { data: (0..n).map(|i| i as u8).collect::<Vec<u8>>().into(), dtype, shape, modality: 3 }
    }

    fn joined(e: &Encoded) -> Vec<u8> {
        e.message_chunks().flat_map(|c| c.iter().copied()).collect()
    }

    fn framed(e: &Encoded) -> Vec<u8> {
        e.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    proptest! {
        /// The chunked encoding is prost's, byte for byte, for every message and any tensor
        /// sizes (inline and separate data, empty tensors, absent ones); the prefix is gRPC's;
        /// and decoding it back from any cut into chunks gives the message, with large data as a
        /// slice of the chunk it arrived in.
        #[test]
        fn chunks_are_prosts_encoding_and_decode_back_from_any_cut(
            a in prop_oneof![Just(0usize), 1usize..64, 16_000usize..17_000],
            b in prop_oneof![Just(0usize), 1usize..64, 16_000usize..17_000],
            shape in proptest::collection::vec(any::<u64>(), 0..4),
            dtype in -1i32..7,
            code in -1i32..20,
            message in ".{0,20}",
            present in any::<(bool, bool)>(),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let ta = present.0.then(|| tensor(a, shape.clone(), dtype));
            let tb = present.1.then(|| tensor(b, shape.clone(), dtype));
            let f = proto::ForwardRequest { inputs: ta.clone(), ..Default::default() };
            let bw = proto::BackwardRequest { inputs: ta.clone(), grads: tb.clone(), ..Default::default() };
            let fr = proto::ForwardResponse { outputs: ta.clone(), code, message: message.clone() };
            let br = proto::BackwardResponse { grads: tb.clone(), code, message };
            let cases = [
                (forward_request(&f), f.encode_to_vec()),
                (backward_request(&bw), bw.encode_to_vec()),
                (forward_response(&fr), fr.encode_to_vec()),
                (backward_response(&br), br.encode_to_vec()),
            ];
            for (e, want) in &cases {
                prop_assert_eq!(&joined(e), want);
                prop_assert_eq!(e.message_len(), want.len());
                let all = framed(e);
                prop_assert_eq!(&all[..PREFIX], &[&[0u8][..], &(want.len() as u32).to_be_bytes()].concat()[..]);
            }
            // Decoding from the chunks as sent: the data of a large tensor is not copied.
            let mut chunks = Chunks::default();
            for c in cases[0].0.chunks.iter() {
                chunks.push(c.clone());
            }
            let mut reader = MessageReader::new(u64::MAX);
            for c in chunks.iter() {
                reader.push(c.clone()).unwrap();
            }
            let back = proto::ForwardRequest::decode(reader.finish().unwrap()).unwrap();
            prop_assert_eq!(&back, &f);
            if let (Some(sent), Some(got)) = (&f.inputs, &back.inputs) {
                if sent.data.len() >= INLINE_DATA {
                    prop_assert_eq!(sent.data.as_ptr(), got.data.as_ptr());
                }
            }
            // Any other cut of the same bytes decodes to the same message.
            let all = framed(&cases[1].0);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (all.len() + 1)).collect();
            points.extend([0, all.len()]);
            points.sort_unstable();
            let mut reader = MessageReader::new(u64::MAX);
            for w in points.windows(2) {
                reader.push(Bytes::copy_from_slice(&all[w[0]..w[1]])).unwrap();
            }
            prop_assert_eq!(proto::BackwardRequest::decode(reader.finish().unwrap()).unwrap(), bw);
        }
    }

    #[test]
    fn the_reader_refuses_compression_excess_and_truncation() {
        let mut r = MessageReader::new(10);
        assert_eq!(r.push(Bytes::from_static(&[1, 0, 0, 0, 1])), Err(FrameError::Compressed));
        let mut r = MessageReader::new(10);
        assert_eq!(
            r.push(Bytes::from_static(&[0, 0, 0, 0, 11])),
            Err(FrameError::TooLong { got: 11, max: 10 })
        );
        let mut r = MessageReader::new(10);
        r.push(Bytes::from_static(&[0, 0, 0])).unwrap();
        assert_eq!(r.declared(), None);
        assert_eq!(r.push(Bytes::from_static(&[0, 2, 7])).unwrap(), Bytes::from_static(&[7]));
        assert_eq!(r.push(Bytes::from_static(&[8, 9])), Err(FrameError::Trailing));
        assert!(!r.is_complete());
        assert_eq!(r.finish().unwrap_err(), FrameError::Truncated { declared: 2, got: 1 });
        assert!(MessageReader::new(10).finish().is_err());
    }
}

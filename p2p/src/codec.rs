//! A request-response codec for the wire messages of [`gpuflow_protocol::wire`]: one message
//! per stream, read up to its size limit and decoded by the protocol crate's decode functions,
//! which refuse oversize input before parsing.
//!
//! `/gpuflow/book/1` uses [`BookCodec`], `/gpuflow/lease/1` uses [`LeaseCodec`].

use std::io;
use std::marker::PhantomData;

use futures::prelude::*;
use gpuflow_protocol::wire::{
    BookRequest, BookResponse, LeaseRequest, LeaseResponse, MAX_BOOK_REQUEST_BYTES,
    MAX_BOOK_RESPONSE_BYTES, MAX_LEASE_REQUEST_BYTES, MAX_LEASE_RESPONSE_BYTES, WireError,
};
use libp2p::{StreamProtocol, request_response};

/// A message that travels alone on a request-response stream.
pub(crate) trait WireMessage: Sized + Send + 'static {
    /// Largest accepted encoding; the reader stops one byte past it.
    const MAX_BYTES: usize;
    /// Decodes, refusing input over [`Self::MAX_BYTES`] before parsing.
    fn decode(bytes: &[u8]) -> Result<Self, WireError>;
    /// Encodes for the wire.
    fn encode(&self) -> Vec<u8>;
}

impl WireMessage for BookRequest {
    const MAX_BYTES: usize = MAX_BOOK_REQUEST_BYTES;
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        BookRequest::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        BookRequest::encode(self)
    }
}

impl WireMessage for BookResponse {
    const MAX_BYTES: usize = MAX_BOOK_RESPONSE_BYTES;
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        BookResponse::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        BookResponse::encode(self)
    }
}

impl WireMessage for LeaseRequest {
    const MAX_BYTES: usize = MAX_LEASE_REQUEST_BYTES;
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        LeaseRequest::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        LeaseRequest::encode(self)
    }
}

impl WireMessage for LeaseResponse {
    const MAX_BYTES: usize = MAX_LEASE_RESPONSE_BYTES;
    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        LeaseResponse::decode(bytes)
    }
    fn encode(&self) -> Vec<u8> {
        LeaseResponse::encode(self)
    }
}

/// Codec for one request type and one response type.
pub(crate) struct WireCodec<Req, Resp>(PhantomData<fn() -> (Req, Resp)>);

impl<Req, Resp> Default for WireCodec<Req, Resp> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<Req, Resp> Clone for WireCodec<Req, Resp> {
    fn clone(&self) -> Self {
        Self::default()
    }
}

/// The `/gpuflow/book/1` codec.
pub(crate) type BookCodec = WireCodec<BookRequest, BookResponse>;
/// The `/gpuflow/lease/1` codec.
pub(crate) type LeaseCodec = WireCodec<LeaseRequest, LeaseResponse>;

async fn read_limited<T, M>(io: &mut T) -> io::Result<M>
where
    T: AsyncRead + Unpin + Send,
    M: WireMessage,
{
    let mut buf = Vec::new();
    // One byte past the limit is enough to know the sender broke it; we read no further.
    let cap = u64::try_from(M::MAX_BYTES)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    io.take(cap).read_to_end(&mut buf).await?;
    M::decode(&buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

async fn write_all<T>(io: &mut T, bytes: Vec<u8>) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    io.write_all(&bytes).await
}

impl<Req: WireMessage, Resp: WireMessage> request_response::Codec for WireCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, req.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        resp: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_all(io, resp.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use libp2p::request_response::Codec;

    #[tokio::test]
    async fn oversize_request_is_refused_without_reading_it_all() {
        let proto = StreamProtocol::new("/gpuflow/book/1");
        let mut codec = BookCodec::default();
        let big = vec![b' '; 10 * MAX_BOOK_REQUEST_BYTES];
        let mut io = Cursor::new(big);
        let err = codec.read_request(&proto, &mut io).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert_eq!(io.position(), MAX_BOOK_REQUEST_BYTES as u64 + 1);
    }

    #[tokio::test]
    async fn request_round_trips() {
        let proto = StreamProtocol::new("/gpuflow/book/1");
        let mut codec = BookCodec::default();
        let req = BookRequest {
            after: None,
            limit: 7,
        };
        let mut out = Cursor::new(Vec::new());
        codec
            .write_request(&proto, &mut out, req.clone())
            .await
            .unwrap();
        let mut input = Cursor::new(out.into_inner());
        assert_eq!(codec.read_request(&proto, &mut input).await.unwrap(), req);
    }
}

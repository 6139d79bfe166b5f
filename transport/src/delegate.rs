//! `AsyncRead`/`AsyncWrite` of a connection wrapper, delegated to the
//! field that holds the stream: every wrapper around a socket (the
//! Unix-socket and TLS connections with their peer, the HTTP/2 guard's
//! write half) forwards the same six methods, vectored writes included.
//!
//! ```ignore
//! spinel_transport::delegate_io!(TlsConnection, io); // read and write
//! spinel_transport::delegate_async_write!(impl[IO: AsyncWrite + Unpin] Guard<IO>, io);
//! ```
//!
//! The type is either a plain type or `impl[<generics>] Type<..>`; the
//! field is a name or a tuple index.

/// `AsyncRead` for a wrapper, delegated to one field.
#[macro_export]
macro_rules! delegate_async_read {
    (impl [$($gen:tt)*] $ty:ty, $field:tt) => {
        impl<$($gen)*> ::tokio::io::AsyncRead for $ty {
            fn poll_read(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &mut ::tokio::io::ReadBuf<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncRead::poll_read(::std::pin::Pin::new(&mut self.$field), cx, buf)
            }
        }
    };
    ($ty:ty, $field:tt) => {
        $crate::delegate_async_read!(impl[] $ty, $field);
    };
}

/// `AsyncWrite` for a wrapper, delegated to one field.
#[macro_export]
macro_rules! delegate_async_write {
    (impl [$($gen:tt)*] $ty:ty, $field:tt) => {
        impl<$($gen)*> ::tokio::io::AsyncWrite for $ty {
            fn poll_write(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                buf: &[u8],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::tokio::io::AsyncWrite::poll_write(::std::pin::Pin::new(&mut self.$field), cx, buf)
            }

            fn poll_flush(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncWrite::poll_flush(::std::pin::Pin::new(&mut self.$field), cx)
            }

            fn poll_shutdown(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
            ) -> ::std::task::Poll<::std::io::Result<()>> {
                ::tokio::io::AsyncWrite::poll_shutdown(::std::pin::Pin::new(&mut self.$field), cx)
            }

            fn poll_write_vectored(
                mut self: ::std::pin::Pin<&mut Self>,
                cx: &mut ::std::task::Context<'_>,
                bufs: &[::std::io::IoSlice<'_>],
            ) -> ::std::task::Poll<::std::io::Result<usize>> {
                ::tokio::io::AsyncWrite::poll_write_vectored(
                    ::std::pin::Pin::new(&mut self.$field),
                    cx,
                    bufs,
                )
            }

            fn is_write_vectored(&self) -> bool {
                ::tokio::io::AsyncWrite::is_write_vectored(&self.$field)
            }
        }
    };
    ($ty:ty, $field:tt) => {
        $crate::delegate_async_write!(impl[] $ty, $field);
    };
}

/// `AsyncRead` and `AsyncWrite` for a wrapper, both delegated to one field.
#[macro_export]
macro_rules! delegate_io {
    ($($args:tt)*) => {
        $crate::delegate_async_read!($($args)*);
        $crate::delegate_async_write!($($args)*);
    };
}
